"""garak as an optional deep scan: read a garak report (its JSONL, as garak writes it) into govkit's
probe categories, or run garak against govkit proxy first. The built-in suite never needs it.

Each garak probe is counted under the category its module tests (promptinject: direct injection,
latentinjection: indirect, encoding: encoded, web_injection and xss: unsafe output, ...); a probe
of a module govkit has no category for is kept in the record, shown, and not judged. Of a probe's
detectors, those of its own module count (else every one but mitigation.MitigationBypass, which
garak adds to other probes as a side check), and the one with the most hits decides: an attempt
that any of them flags is an attack that worked."""

from __future__ import annotations

import gzip
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError

__all__ = ["CATEGORY_OF", "GarakReport", "categories_of", "read_garak_report"]

# garak probe module (or module.Class) -> govkit category
CATEGORY_OF = {
    "promptinject": "direct_injection", "dan": "direct_injection", "goodside.Tag": "encoded_injection",
    "latentinjection": "indirect_injection", "encoding": "encoded_injection", "smuggling": "encoded_injection",
    "web_injection": "output_handling", "xss": "output_handling", "ansiescape": "output_handling",
    "exploitation": "output_handling", "goodside.WhoIsRiley": "confabulation", "misleading": "confabulation",
    "packagehallucination": "confabulation", "snowball": "confabulation", "lmrc": "harmful_compliance",
    "malwaregen": "harmful_compliance", "donotanswer": "harmful_compliance", "sysprompt_extraction": "system_prompt_leak",
}


@dataclass(frozen=True)
class GarakReport:
    path: Path
    sha256: str
    version: str
    run_id: str
    started: str
    finished: str
    seed: Any
    target: str
    probes: dict[str, dict[str, Any]]  # probe -> {detector: {"fails", "total"}}
    attempts: int


def _lines(path: Path) -> tuple[bytes, list[str]]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", file=path) from None
    if raw[:2] == b"\x1f\x8b":
        try:
            text = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise InputError(f"not a readable gzip file ({exc})", file=path) from None
    else:
        text = raw
    try:
        return raw, text.decode("utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text (byte {exc.start})", file=path) from None


def read_garak_report(path: Path) -> GarakReport:
    """The report's run, target and per-probe detector tallies; a clear error for a file that is
    not a whole garak report (no init, no completion: a run cut off is not evidence)."""
    raw, lines = _lines(path)
    init = completion = setup = None
    probes: dict[str, dict[str, Any]] = {}
    attempts = 0
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            raise InputError(f"line {number} is not JSON: not a garak report", file=path) from None
        kind = entry.get("entry_type") if isinstance(entry, dict) else None
        if kind == "init":
            init = entry
        elif kind == "completion":
            completion = entry
        elif kind == "start_run setup":
            setup = entry
        elif kind == "attempt" and entry.get("status") == 2:
            attempts += 1
        elif kind == "eval":
            try:
                probe, detector = str(entry["probe"]), str(entry["detector"])
                total, fails = int(entry["total_evaluated"]), int(entry["fails"])
            except (KeyError, TypeError, ValueError):
                raise InputError(f"line {number}: an eval entry without probe, detector, fails and "
                                 "total_evaluated", file=path) from None
            if not 0 <= fails <= total:
                raise InputError(f"line {number}: {fails} fails of {total} evaluated", file=path)
            probes.setdefault(probe, {})[detector] = {"fails": fails, "total": total}
    if init is None or setup is None:
        raise InputError("no garak init and run setup entries: not a garak report", file=path)
    if completion is None or completion.get("run") != init.get("run"):
        raise InputError("the run has no completion entry: garak stopped before the end, and a partial run "
                         "is not evidence; run it again", file=path)
    if not probes:
        raise InputError("no eval entries: garak judged nothing in this run", file=path)
    return GarakReport(path=path, sha256="sha256:" + hashlib.sha256(raw).hexdigest(),
                       version=str(init.get("garak_version") or setup.get("_config.version") or "?"),
                       run_id=str(init.get("run")), started=str(init.get("start_time")),
                       finished=str(completion.get("end_time")), seed=setup.get("run.seed"),
                       target=f"{setup.get('plugins.target_type') or setup.get('plugins.model_type')}:"
                              f"{setup.get('plugins.target_name') or setup.get('plugins.model_name')}",
                       probes=probes, attempts=attempts)


def category_of(probe: str) -> str | None:
    module = probe.split(".", 1)[0]
    return CATEGORY_OF.get(probe) or CATEGORY_OF.get(module)


def counted(probe: str, detectors: dict[str, dict[str, Any]]) -> tuple[str, int, int]:
    """(detector, hits, attempts) deciding the probe: its own module's detectors first."""
    module = probe.split(".", 1)[0]
    own = {d: t for d, t in detectors.items() if d.split(".", 1)[0] == module}
    chosen = own or {d: t for d, t in detectors.items() if not d.startswith("mitigation.")} or detectors
    name, tally = max(sorted(chosen.items()), key=lambda kv: (kv[1]["fails"] / kv[1]["total"]) if kv[1]["total"] else 0)
    return name, tally["fails"], tally["total"]


def categories_of(report: GarakReport) -> tuple[dict[str, tuple[int, int]], dict[str, dict[str, Any]]]:
    """Per govkit category (hits, attempts) summed over its garak probes, and each probe's row."""
    tallies: dict[str, tuple[int, int]] = {}
    rows = {}
    for probe, detectors in sorted(report.probes.items()):
        detector, hits, total = counted(probe, detectors)
        category = category_of(probe)
        rows[probe] = {"category": category, "detector": detector, "hits": hits, "attempts": total,
                       "rate": round(hits / total, 6) if total else None, "detectors": detectors}
        if category is not None:
            before = tallies.get(category, (0, 0))
            tallies[category] = (before[0] + hits, before[1] + total)
    return tallies, rows
