"""The Jinja environment reports render with: the built-in templates (templates/, shipped in the
wheel) under the `govkit/` prefix and by plain name, with an institution's folder first, so a
template of theirs replaces one of ours or extends it block by block
(`{% extends "govkit/board.html.j2" %}`). HTML autoescapes everything; Markdown escapes through
the `md` filter. The same inputs render the same bytes: no clock, no random ids."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from .._lazy import require
from .._resources import builtin_dir
from ..digests import sha256_digest

__all__ = ["environment", "template_digests"]

_MD_SPECIAL = re.compile(r"([\\`*_\[\]#|<>&~])")  # what Markdown or the HTML inside it would act on


def environment(templates_dir: Path | None, *, html: bool) -> Any:
    jinja2 = require("jinja2", "report")
    builtin = jinja2.FileSystemLoader(str(builtin_dir("templates")))
    loaders = [jinja2.PrefixLoader({"govkit": builtin}, delimiter="/")]
    if templates_dir is not None:
        loaders.insert(0, jinja2.FileSystemLoader(str(templates_dir)))
    loaders.append(builtin)
    env = jinja2.Environment(loader=jinja2.ChoiceLoader(loaders), autoescape=html, undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)
    env.filters["md"] = lambda value: _MD_SPECIAL.sub(r"\\\1", str(value)).replace("\n", " ")
    env.filters["yaml"] = lambda value: json.dumps(value, ensure_ascii=False)  # a JSON scalar is a YAML scalar
    env.filters["code"] = lambda value: "`" + str(value).replace("`", "'").replace("\n", " ") + "`"
    env.filters["pct"] = lambda value, digits=1: "n/a" if value is None else f"{value * 100:.{digits}f}%"
    env.filters["num"] = lambda value: "n/a" if value is None else (f"{value:,}" if isinstance(value, int)
                                                                      else f"{value:,.3f}")
    env.filters["short"] = lambda value, n=12: "" if value is None else str(value).removeprefix("sha256:")[:n]
    return env


def template_digests(env: Any, names: list[str]) -> dict[str, str]:
    """The sha256 of each template a report used, by name, with what each extends or includes."""
    seen: dict[str, str] = {}
    pending = list(names)
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        source, _, _ = env.loader.get_source(env, name)
        seen[name] = sha256_digest(source)
        pending.extend(re.findall(r"""{%-?\s*(?:extends|include|import)\s+["']([^"']+)["']""", source))
    return dict(sorted(seen.items()))
