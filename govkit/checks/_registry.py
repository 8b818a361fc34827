"""The check decorator, loading check files by path, and the registry that refuses duplicate IDs.

The decorator only attaches metadata; nothing is registered at import time. `load` imports each
`*.py` file of a folder under a private module name (the folders are never put on sys.path) and
collects the decorated functions. Built-in IDs can never be redefined; a user folder may override
the built-in policy values through a module-level `POLICY = {...}` dict.
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..digests import sha256_digest
from ..errors import InputError
from ._model import PRINCIPLES, CheckSpec, DuplicateCheck, Result, check_spec

__all__ = ["Registry", "check", "load"]


def check(*, id: str, title: str, severity: str, references: dict[str, str],
          crosswalk: str | None = None) -> Callable[[Callable[..., Result]], Callable[..., Result]]:
    """Declare a check: a function of the evidence context that returns a Result.

    Its docstring is its documentation, with the sections "What it checks:", "Why it matters:"
    and "How to fix:".
    """
    def attach(function: Callable[..., Result]) -> Callable[..., Result]:
        function.__govkit_check__ = dict(id=id, title=title, severity=severity, references=references,  # type: ignore[attr-defined]
                                         crosswalk=crosswalk)
        return function

    return attach


class Registry:
    def __init__(self) -> None:
        self.specs: dict[str, CheckSpec] = {}
        self.policy: dict[str, Any] = {}
        self.user_files: dict[str, str] = {}  # path -> sha256 of every user check file loaded (it is code)

    def add(self, spec: CheckSpec) -> None:
        existing = self.specs.get(spec.id)
        if existing is not None:
            what = "a built-in check" if existing.builtin else "another check"
            raise DuplicateCheck(f"{spec.source}: check id {spec.id} is already used by {what} in {existing.source}; "
                                 "IDs are stable and never reused")
        self.specs[spec.id] = spec

    def select(self, select: Iterable[str] = (), ignore: Iterable[str] = ()) -> list[CheckSpec]:
        """By ID, ID prefix (GOV, GOV-00) or principle name (Governance); unknown selections fail."""
        chosen = list(self.specs.values())
        wanted = [s.strip() for s in select if s.strip()]
        if wanted:
            chosen = [spec for spec in chosen if any(_matches(spec, w) for w in wanted)]
            for item in wanted:
                if not any(_matches(spec, item) for spec in self.specs.values()):
                    raise InputError(f"no check matches '{item}'", parameter="select")
        for item in (s.strip() for s in ignore if s.strip()):
            if not any(_matches(spec, item) for spec in self.specs.values()):
                raise InputError(f"no check matches '{item}'", parameter="ignore")
            chosen = [spec for spec in chosen if not _matches(spec, item)]
        return sorted(chosen, key=lambda spec: spec.id)


def _matches(spec: CheckSpec, selector: str) -> bool:
    lowered = selector.lower()
    return spec.id.lower().startswith(lowered) or spec.principle.lower() == lowered or \
        (lowered.upper() in PRINCIPLES and spec.id.startswith(lowered.upper()))


def load(registry: Registry, folder: Path, *, builtin: bool) -> None:
    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder", parameter="checks_dirs")
    for path in sorted(folder.glob("*.py")):
        if path.name.startswith("_"):
            continue
        name = "govkit_checks_" + hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12] + "_" + path.stem
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            continue
        module = importlib.util.module_from_spec(spec)
        if not builtin:
            registry.user_files[str(path)] = sha256_digest(path.read_bytes())
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            raise InputError(f"{path}: cannot load checks ({type(exc).__name__}: {exc})") from None
        for value in vars(module).values():
            meta = getattr(value, "__govkit_check__", None)
            if meta is not None and getattr(value, "__module__", None) == name:
                registry.add(check_spec(value, source=str(path), builtin=builtin, **meta))
        if not builtin and isinstance(getattr(module, "POLICY", None), dict):
            registry.policy.update(module.POLICY)
