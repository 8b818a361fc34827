"""The root `govkit` group and its one error boundary.

Exit codes: 0 ok; 1 findings (a failed verification, a blocking check, a breached threshold);
2 usage or input error (bad file, field, value or config; a question with no terminal to ask);
3 the environment failed (an unreachable or failing model endpoint; an audit store missing,
locked, corrupt or full); 4 an internal error, a bug in govkit (the message asks for a report;
under tests, and with GOVKIT_RAISE_ERRORS set, the exception itself is raised).
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from ..errors import GovkitError

__all__ = ["cli"]

EXIT_CODES = """\b
Exit codes:
  0  ok
  1  findings: a log that does not verify, a blocking check, a breached threshold
  2  usage or input error (names the file, field, row or flag)
  3  environment: model endpoint unreachable or failing; audit store missing,
     locked, corrupt or full
  4  internal error: a bug in govkit (please report it)"""


def _raise_errors() -> bool:
    return bool(os.environ.get("GOVKIT_RAISE_ERRORS") or os.environ.get("PYTEST_CURRENT_TEST"))


def _quiet_broken_pipe() -> None:
    """The reader went away (`govkit audit export | head -1`): nothing more to say, and the
    interpreter must not complain when it flushes stdout at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _flag_namer(root: click.Group, words: list[str]) -> Callable[[str], str]:
    """How the command that ran spells a library parameter: its option of that name ("model_path"
    is --model), else an option of that name on another command, else the name as a flag."""
    path: list[click.Command] = []
    command: click.Command | None = root
    for word in words:
        if not isinstance(command, click.Group):
            break
        command = command.commands.get(word)
        if command is None:
            break
        path.append(command)

    def every(command: click.Command) -> list[click.Command]:
        below = [every(c) for c in command.commands.values()] if isinstance(command, click.Group) else []
        return [command, *(c for group in below for c in group)]

    flags: dict[str, str] = {}
    for command in [*reversed(path), *every(root)]:
        for param in command.params:
            if isinstance(param, click.Option) and param.name and param.opts:
                flags.setdefault(param.name, max(param.opts, key=len))
    return lambda name: flags.get(name, "--" + name.replace("_", "-"))


class _Root(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        words = [*getattr(ctx, "_protected_args", ()), *ctx.args]  # the command line below the root
        try:
            return super().invoke(ctx)
        except GovkitError as exc:
            if os.environ.get("GOVKIT_RAISE_ERRORS"):
                raise
            click.echo(f"Error: {exc.render(_flag_namer(self, words))}", err=True)
            ctx.exit(exc.exit_code)
        except OSError as exc:  # a file the user named: missing, unreadable, disk full
            if exc.errno == errno.EPIPE:
                _quiet_broken_pipe()
                ctx.exit(0)
            if os.environ.get("GOVKIT_RAISE_ERRORS"):
                raise
            where = f"{exc.filename}: " if exc.filename else ""
            click.echo(f"Error: {where}{exc.strerror or exc}", err=True)
            ctx.exit(3 if exc.errno == errno.ENOSPC else 2)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as exc:  # not a user's mistake: a bug
            if _raise_errors():
                raise
            click.echo(f"Internal error: {type(exc).__name__}: {exc}\nThis is a bug in govkit, not in your input. "
                       f"Please report it with the command you ran and this message "
                       f"(set GOVKIT_RAISE_ERRORS=1 for the traceback).", err=True)
            ctx.exit(4)


@click.group(cls=_Root, context_settings={"help_option_names": ["-h", "--help"]}, epilog=EXIT_CODES)
@click.version_option(package_name="govkit")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              envvar="GOVKIT_CONFIG", help="govkit.toml to use (default: ./govkit.toml).")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None) -> None:
    """govkit: governance evidence for locally deployed language models.

    Every call to the model, and every governance action, leaves a tamper-evident,
    privacy-redacted audit record (EDGE: Explainability, Data, Governance, Ethics).
    """
    ctx.obj = {"config": config_path}
