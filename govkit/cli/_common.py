"""Helpers shared by the command groups."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, Literal, overload

import click

from ..audit import AuditLog
from ..config import Settings, find_config, load_settings
from ..errors import ConfigError, InputError

db_option = click.option("--db", type=click.Path(dir_okay=False, path_type=Path),
                         help="Audit database (default: from govkit.toml).")


def model_options(function: Any) -> Any:
    """The model a command asks (`bias llm`, `bias counterfactual`, `explain text`): an endpoint or
    an in-process GGUF file, the file the endpoint serves, and a system message."""
    options = [
        click.option("--endpoint", help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8080/v1 (llama.cpp, "
                                        "Ollama, vLLM, govkit proxy)."),
        click.option("--model", "model_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                     help="Or a GGUF file run in-process with llama-cpp-python."),
        click.option("--model-artifact", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                     help="The model file the endpoint serves, to tie the evidence to its sha256."),
        click.option("--system", help="A system message sent before every prompt."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def choice_options(positive_help: str) -> Any:
    """--choices and --positive: the answers the model may give, and the one that counts."""
    def decorate(function: Any) -> Any:
        function = click.option("--positive", required=True, help=positive_help)(function)
        return click.option("--choices", required=True,
                            help="The allowed answers, comma-separated, e.g. approve,deny.")(function)
    return decorate


def json_option(function: Any) -> Any:
    """`--format table|json`, the one spelling for JSON output on every command (`--json` is kept
    as a hidden alias); the command receives `as_json`."""
    @functools.wraps(function)
    def command(*args: Any, output_format: str, legacy_json: bool, **kwargs: Any) -> Any:
        return function(*args, as_json=legacy_json or output_format == "json", **kwargs)

    command = click.option("--json", "legacy_json", is_flag=True, hidden=True)(command)
    return click.option("--format", "output_format", type=click.Choice(["table", "json"]), default="table",
                        show_default=True, help="json: machine-readable output.")(command)


# A count given on the command line: at least one, and no more than SQLite and pandas take.
COUNT = click.IntRange(min=1, max=2**63 - 1)


def refuse_evidence(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """A click callback for every output path: never a store, key, config or segment (exit 2),
    refused before the command does anything (outputs.check_output, as every writer checks too)."""
    from ..outputs import check_output

    for path in value if isinstance(value, tuple) else (value,):
        if path is not None:
            try:
                check_output(path)
            except InputError as exc:
                raise click.BadParameter(exc.message, ctx=ctx, param=param) from None
    return value


def public_key_value(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A click callback: a base64 Ed25519 public key, or a usage error naming the flag (exit 2)."""
    if value is None:
        return None
    from ..audit.checkpoints import parse_public_key
    from ..errors import InputError

    try:
        return parse_public_key(value, source="the key")
    except InputError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None


def device_id_value(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A click callback: a device id as `govkit init` makes them (it is matched in MLflow's search)."""
    if value is not None and (not value or any(c in value for c in "'\"\\`") or not value.isprintable()):
        raise click.BadParameter(f"{value!r}: a device id has no quotes, backslashes or control characters",
                                 ctx=ctx, param=param)
    return value


def output_option(help: str, dest: str = "output") -> Any:
    """`-o/--output FILE`, the one spelling for a file a command writes (`--out` still accepted)."""
    return click.option("--output", "-o", "--out", dest, type=click.Path(dir_okay=False, path_type=Path), help=help,
                        callback=refuse_evidence)


@overload
def settings_for(ctx: click.Context, *, required: Literal[True]) -> Settings: ...
@overload
def settings_for(ctx: click.Context, *, required: bool) -> Settings | None: ...
def settings_for(ctx: click.Context, *, required: bool) -> Settings | None:
    explicit = ctx.find_root().obj.get("config")
    path = explicit or find_config()
    if explicit or path.exists():
        return load_settings(path)
    if required:
        raise ConfigError(path, None, "no such file; run 'govkit init' here, or pass --db")
    return None


def open_log(ctx: click.Context, db: Path | None, *, create: bool = False, **overrides: Any) -> AuditLog:
    settings = settings_for(ctx, required=db is None)
    return AuditLog.open(db, settings=settings, create=create, **overrides)


def ask(text: str, *, flag: str, **options: Any) -> Any:
    """click.prompt, but with no terminal (cron, CI: stdin at its end) an input error at once that
    names the flag giving the answer, not click's "Aborted!" with exit 1."""
    try:
        return click.prompt(text, **options)
    except click.Abort:
        raise InputError(f"'{text}' needs an answer and there is no terminal to ask on; pass {flag}") from None


def confirm(text: str, *, flag: str) -> None:
    """Go ahead only when confirmed; with no terminal, an input error naming the flag."""
    try:
        answered = click.confirm(text)
    except click.Abort:
        raise InputError(f"'{text}' needs a yes and there is no terminal to ask on; pass {flag}") from None
    if not answered:
        raise InputError("not confirmed: nothing was changed")


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False))
