"""The terminal view of the newest windows: one line a window, each signal's state in a column."""

from __future__ import annotations

from typing import Any

import click

__all__ = ["status_table"]

_COLUMNS = (("calls", "volume"), ("p95 ms", "latency_ms"), ("errors", "error_rate"), ("refusals", "refusal_rate"),
            ("cut", "truncation_rate"), ("in tok", "input_tokens"), ("out tok", "output_tokens"),
            ("decision", "decision"))


def _cell(name: str, signal: Any, breached: set[str]) -> str:
    if not isinstance(signal, dict):
        return "-"
    if name == "volume":
        text = str(signal.get("calls"))
    elif name == "latency_ms":
        text = "-" if signal.get("p95") is None else f"{signal['p95']:g}"
    elif "rate" in signal:
        text = "-" if signal.get("rate") is None else f"{signal['rate']:.1%}"
    elif "psi" in signal:
        text = f"PSI {signal['psi']:.2f}"
    else:
        text = "-"
    flagged = any(b == name or b.startswith(name.split("_")[0]) for b in breached)
    return text + ("!" if flagged and name != "volume" else "")


def status_table(windows: list[dict[str, Any]]) -> None:
    """Print the windows (their chained details), a '!' beside each signal that breached."""
    header = f"{'window':<21}{'status':<11}" + "".join(f"{title:>11}" for title, _ in _COLUMNS)
    click.echo(header)
    for w in windows:
        breached = {b.get("signal", "") for b in w.get("breaches") or []}
        signals = w.get("signals") or {}
        cells = "".join(f"{_cell(name, signals.get(name), breached):>11}" for _, name in _COLUMNS)
        click.echo(f"{(w.get('window') or {}).get('start', '?'):<21}{w.get('status', '?'):<11}{cells}")
