"""The Jinja environment reports render with: the built-in templates (templates/, shipped in the
wheel) under the `govkit/` prefix and by plain name, with an institution's folder first, so a
template of theirs replaces one of ours or extends it block by block
(`{% extends "govkit/board.html.j2" %}`). HTML autoescapes everything; Markdown escapes through
the `md` filter. The same inputs render the same bytes: no clock, no random ids."""

from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path
from typing import Any

from .._lazy import require
from .._resources import builtin_dir
from ..digests import sha256_digest
from . import formatting

__all__ = ["environment", "template_digests"]

_MD_SPECIAL = re.compile(r"([\\`*_\[\]#|<>&~])")  # what Markdown or the HTML inside it would act on


def one_line(value: Any) -> str:
    """A value on one line of Markdown: every line break Unicode knows (CR, NEL, LS, PS, VT, FF
    as well as LF) and every other control character becomes a space, so a value can never open
    a heading, a rule or a list of its own."""
    text = " ".join(str(value).splitlines())
    return "".join(" " if unicodedata.category(c) == "Cc" else c for c in text)


def yaml_scalar(value: Any) -> str:
    """A YAML scalar: JSON (a JSON scalar is a YAML one), with every character YAML does not allow
    raw in a stream (C0 and C1 controls, DEL, NEL, the line and paragraph separators, a BOM,
    unpaired surrogates) written as its escape."""
    text = json.dumps(value, ensure_ascii=False)
    return "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in text)


def environment(templates_dir: Path | None, *, html: bool) -> Any:
    jinja2 = require("jinja2", "report")
    builtin = jinja2.FileSystemLoader(str(builtin_dir("templates")))
    loaders = [jinja2.PrefixLoader({"govkit": builtin}, delimiter="/")]
    if templates_dir is not None:
        loaders.insert(0, jinja2.FileSystemLoader(str(templates_dir)))
    loaders.append(builtin)
    env = jinja2.Environment(loader=jinja2.ChoiceLoader(loaders), autoescape=html, undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)
    env.filters["md"] = lambda value: _MD_SPECIAL.sub(r"\\\1", one_line(value))
    env.filters["yaml"] = yaml_scalar
    env.filters["code"] = lambda value: "`" + one_line(value).replace("`", "'") + "`"
    env.filters["pct"] = formatting.percent
    env.filters["ms"] = formatting.milliseconds
    env.filters["metric"] = formatting.metric_words
    env.filters["mvalue"] = formatting.metric_value
    env.filters["interval"] = formatting.interval
    env.filters["num"] = lambda value: "n/a" if value is None else (f"{value:,}" if isinstance(value, int)
                                                                      else f"{value:,.3f}")
    env.filters["rate_ci"] = formatting.rate_with_interval
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


QUALITY_MEASURES = (("accuracy", "accuracy", "decisions that match the outcome"),
                    ("true_positive_rate", "recall", "of those with the favourable outcome, how many got it"),
                    ("false_positive_rate", "false positive rate", "of those without it, how many got it all the same"),
                    ("false_negative_rate", "false negative rate", "of those with it, how many were refused it"),
                    ("precision", "precision", "of those who got it, how many had the favourable outcome"))
