"""The `govkit` command: one click group per noun (see `govkit --help` for exit codes)."""

from __future__ import annotations

from . import (  # noqa: F401  (each module adds its commands to the root group)
    audit,
    bias,
    check,
    demo,
    explain,
    finding,
    fleet,
    init,
    inventory,
    lineage,
    monitor,
    people,
    policy,
    probe,
    proxy,
    report,
    serve,
)
from ._root import cli

__all__ = ["cli", "main"]


def main() -> None:
    cli.main(prog_name="govkit")
