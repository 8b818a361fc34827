"""The root `govkit` group and its one error boundary.

Exit codes: 0 ok; 1 findings or a failed verification; 2 usage or input error (bad file,
field, value or config); 3 the environment failed (audit store locked, corrupt or disk full).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from ..errors import GovkitError

__all__ = ["cli"]

EXIT_CODES = """\b
Exit codes:
  0  ok
  1  findings, or an audit log that does not verify
  2  usage or input error (names the file, field or row)
  3  environment failure: store locked, corrupt, or disk full"""


class _Root(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except GovkitError as exc:
            if os.environ.get("GOVKIT_RAISE_ERRORS"):
                raise
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except OSError as exc:  # a file the user named: missing, unreadable, disk full
            if os.environ.get("GOVKIT_RAISE_ERRORS"):
                raise
            where = f"{exc.filename}: " if exc.filename else ""
            click.echo(f"Error: {where}{exc.strerror or exc}", err=True)
            ctx.exit(3 if exc.errno == 28 else 2)


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
