"""The demo's folder: new, empty, or an earlier demo's, whose own files alone it replaces (Step 8:
it never touches a file it did not create)."""

from __future__ import annotations

import shutil
from pathlib import Path

from ..errors import InputError

__all__ = ["MARKER", "prepare_folder", "write_marker"]

MARKER = ".govkit-demo"  # lists what a demo made in its folder, so a later run removes only that


def prepare_folder(folder: Path) -> set[str]:
    """An empty (or new) folder, or an earlier demo's, whose own files alone are removed. Any
    other non-empty folder is refused: the demo never deletes what it did not create. Returns the
    names already there, which are not the demo's."""
    if folder.exists() and not folder.is_dir():
        raise InputError(f"--dir {folder}: not a folder")
    if folder.exists() and any(folder.iterdir()):
        marker = folder / MARKER
        if not marker.is_file():
            raise InputError(f"--dir {folder}: the folder is not empty and holds no earlier demo; choose a new "
                             f"or empty folder (the demo never deletes files it did not create)")
        for name in marker.read_text(encoding="utf-8").split():
            target = folder / name
            if "/" in name or name in ("", ".", "..") or not target.exists():
                continue
            shutil.rmtree(target) if target.is_dir() and not target.is_symlink() else target.unlink()
        marker.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    return {p.name for p in folder.iterdir()}


def write_marker(folder: Path, before: set[str]) -> None:
    made = sorted({p.name for p in folder.iterdir()} - before)
    (folder / MARKER).write_text("\n".join(made) + "\n", encoding="utf-8")
