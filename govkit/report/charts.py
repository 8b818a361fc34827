"""Charts for reports: matplotlib SVG, inline in the page. Deterministic (a fixed hash salt, no
date in the file, text kept as text), readable in grayscale (hatching and printed values, not
colour alone), with alt text, and inert: labels are data, never markup or math."""

from __future__ import annotations

import io
import re
import textwrap
from typing import Any

from .._lazy import require

__all__ = ["group_rates_chart", "monitoring_chart"]

_HATCHES = ("", "///", "...", "xxx", "\\\\\\", "ooo", "---", "+++")


def group_rates_chart(title: str, groups: list[dict[str, Any]], *, measure: str = "selection rate") -> str:
    """A horizontal bar per group: its rate, its interval as an error bar, its size in the label."""
    matplotlib = require("matplotlib", "report")
    matplotlib.use("Agg", force=True)
    pyplot = require("matplotlib.pyplot", "report")
    figures = require("matplotlib.figure", "report")

    shown = [g for g in groups if g.get("selection_rate") is not None]
    settings = {"svg.hashsalt": "govkit", "svg.fonttype": "none", "font.family": "DejaVu Sans", "font.size": 8,
                "text.parse_math": False, "axes.unicode_minus": False}
    with pyplot.rc_context(settings):
        heading = textwrap.fill(title, 80)  # a long view name wraps instead of running off the page
        figure = figures.Figure(figsize=(6.4, 0.35 * max(len(shown), 1) + 0.75 + 0.18 * heading.count("\n")))
        axes = figure.add_subplot()
        for i, group in enumerate(shown):
            rate = group["selection_rate"]
            interval = group.get("interval")
            error = [[rate - interval[0]], [interval[1] - rate]] if interval else None
            axes.barh(i, rate, color="#cfcfcf" if group.get("small") else "#7a7a7a", edgecolor="black",
                      hatch=_HATCHES[i % len(_HATCHES)], xerr=error, capsize=3, error_kw={"ecolor": "black"})
            # The values stand in a column right of the axis: never on a bar's interval line.
            axes.text(1.03, i, f"{rate:.0%}" if rate >= 0.1 or rate == 0 else f"{rate:.1%}", va="center", fontsize=7,
                      transform=axes.get_yaxis_transform())
        axes.set_yticks(range(len(shown)), [textwrap.shorten(_label(g), 48, placeholder="...") for g in shown])
        axes.set_xlim(0, 1)
        axes.invert_yaxis()
        axes.set_xlabel(f"{measure} (line: 95% interval; light bar: group too small to judge)")
        axes.set_title(heading, fontsize=9, loc="left")
        figure.tight_layout(rect=(0, 0, 0.94, 1))
        buffer = io.StringIO()
        figure.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg"):]  # inline: no XML declaration or doctype
    alt = f"{title}: " + "; ".join(f"{_label(g)} {g['selection_rate']:.1%}" for g in shown)
    svg = svg.replace("<svg ", f'<svg role="img" aria-label="{_attribute(alt)}" ', 1)
    svg = re.sub(r"(<svg[^>]*>)", lambda m: m.group(1) + f"<title>{_text(alt)}</title>", svg, count=1)
    if not _inert(svg):  # matplotlib escapes text; this makes sure
        raise ValueError("chart SVG holds markup it must not")
    return svg


def monitoring_chart(windows: list[dict[str, Any]], plan: dict[str, Any] | None) -> str:
    """The monitored windows over the period: PSI of answer length and of the decision mix against
    the plan's bands (top), latency p95 against the SLO (bottom); a breached window is marked."""
    matplotlib = require("matplotlib", "report")
    matplotlib.use("Agg", force=True)
    pyplot = require("matplotlib.pyplot", "report")
    figures = require("matplotlib.figure", "report")

    plan = plan or {}
    settings = {"svg.hashsalt": "govkit", "svg.fonttype": "none", "font.family": "DejaVu Sans", "font.size": 8,
                "text.parse_math": False, "axes.unicode_minus": False}
    labels = [w["start"][:13].replace("T", " ") if w.get("kind") == "hour" else w["start"][:10] for w in windows]
    x = list(range(len(windows)))
    with pyplot.rc_context(settings):
        figure = figures.Figure(figsize=(6.4, 3.6))
        top, bottom = figure.subplots(2, 1, sharex=True)
        for key, label, style in (("output_psi", "answer length", "-o"), ("decision_psi", "decision mix", "--s"),
                                  ("input_psi", "prompt length", ":^")):
            values = [w.get(key) for w in windows]
            if any(v is not None for v in values):
                top.plot(x, [float("nan") if v is None else v for v in values], style, color="black", label=label,
                         markersize=3, linewidth=1)
        for level, name in ((plan.get("psi_moderate"), "moderate"), (plan.get("psi_significant"), "significant")):
            if level is not None:
                top.axhline(level, color="#7a7a7a", linewidth=0.8, linestyle="-." if name == "moderate" else "-",
                            label=f"PSI {level:g}: {name} change")
        top.set_yscale("symlog", linthresh=0.1)  # the bands near 0.1 stay readable beside a PSI of 9
        ticks = [0, 0.1, 0.25, 1, 10]
        top.set_yticks(ticks, [f"{t:g}" for t in ticks])
        top.set_ylim(0, 20)
        top.set_ylabel("PSI against the reference")
        top.legend(fontsize=6, loc="best")
        p95 = [w.get("p95") for w in windows]
        bottom.plot(x, [float("nan") if v is None else v for v in p95], "-o", color="black", markersize=3, linewidth=1,
                    label="latency p95")
        if plan.get("latency_p95_ms"):
            bottom.axhline(plan["latency_p95_ms"], color="#7a7a7a", linewidth=0.8,
                           label=f"SLO {plan['latency_p95_ms']:g} ms")
        bottom.legend(fontsize=6, loc="best")
        for i, w in enumerate(windows):
            if w.get("breaches"):
                for axes in (top, bottom):
                    axes.axvspan(i - 0.4, i + 0.4, color="#e0e0e0", zorder=0, hatch="///", linewidth=0)
        bottom.set_ylabel("latency p95 (ms)")
        bottom.set_xticks(x, labels, rotation=45, ha="right", rotation_mode="anchor", fontsize=6)
        top.set_title("Production calls by window against the reference (hatched: a breach)", fontsize=9, loc="left")
        figure.tight_layout()
        buffer = io.StringIO()
        figure.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg"):]
    breached = [labels[i] for i, w in enumerate(windows) if w.get("breaches")]
    alt = (f"{len(windows)} monitored windows; breaches in: {', '.join(breached) or 'none'}")
    svg = svg.replace("<svg ", f'<svg role="img" aria-label="{_attribute(alt)}" ', 1)
    svg = re.sub(r"(<svg[^>]*>)", lambda m: m.group(1) + f"<title>{_text(alt)}</title>", svg, count=1)
    if not _inert(svg):
        raise ValueError("chart SVG holds markup it must not")
    return svg


def _inert(svg: str) -> bool:
    """No script element and no event-handler attribute anywhere in the SVG, read as XML: text
    and comments may say anything ("applicants onboarding=2026.csv"), since they run nothing."""
    import xml.etree.ElementTree as ElementTree

    try:
        root = ElementTree.fromstring(svg)
    except ElementTree.ParseError:
        return False
    for element in root.iter():
        if element.tag.rsplit("}", 1)[-1].lower() in ("script", "foreignobject"):
            return False
        if any(name.rsplit("}", 1)[-1].lower().startswith("on") for name in element.attrib):
            return False
        if any(value.strip().lower().startswith("javascript:") for value in element.attrib.values()):
            return False
    return True


def _label(group: dict[str, Any]) -> str:
    count = group.get("count")
    return f"{group['group']} (n={count})" if count is not None else str(group["group"])


def _text(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _attribute(value: str) -> str:
    return _text(value).replace('"', "&quot;")
