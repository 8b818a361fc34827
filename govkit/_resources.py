"""Where the built-in `checks/` and `templates/` folders are: inside the wheel, or in the source tree."""

from __future__ import annotations

from pathlib import Path

__all__ = ["builtin_dir"]


def builtin_dir(name: str) -> Path:
    """`govkit/_builtin/<name>` in an installed wheel; the repository's top-level `<name>/` otherwise."""
    package = Path(__file__).resolve().parent
    installed = package / "_builtin" / name
    return installed if installed.is_dir() else package.parent / name
