"""Prompts for LLM bias tests: a Jinja template rendered per row, and each prompt's digest.

The decisions themselves come from `govkit.inference.decider.Decider`.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .._lazy import require
from ..digests import sha256_digest
from ..errors import InputError

__all__ = ["load_template", "prompt_digest"]


def load_template(path: Path, columns: Iterable[str], extra: Iterable[str] = ()) -> Any:
    """The Jinja template, checked: every variable it uses is a data column (or an `extra` name)."""
    jinja2 = require("jinja2", "bias")
    from jinja2 import meta

    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the prompt template ({exc})") from None
    environment = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=False)
    try:
        variables = meta.find_undeclared_variables(environment.parse(source))
    except jinja2.TemplateSyntaxError as exc:
        raise InputError(f"{path}, line {exc.lineno}: template syntax error: {exc.message}") from None
    missing = sorted(variables - set(columns) - set(extra))
    if missing:
        raise InputError(f"{path}: the template uses {', '.join(missing)}, which the data does not have "
                         f"(columns: {', '.join(sorted(columns))})")
    return environment.from_string(source)


def prompt_digest(prompt: str) -> str:
    return sha256_digest(prompt)
