"""shap attributions of a prompt's segments to a language model's decision, through its endpoint.

The explained quantity f(prompt) is the log-odds of the positive choice against the others, from
the log-probabilities the server returns for the first answer token (govkit.inference.decider). shap's
Partition explainer masks segments (words or sentences) hierarchically and spends exactly its
budget of evaluations. govkit makes those evaluations cheap: identical masked prompts are
evaluated once, and each batch is sent in sorted order so consecutive prompts share long prefixes,
which llama.cpp keeps in its KV cache instead of recomputing.

llama.cpp's reuse of the previous request's cache perturbs log-probabilities slightly, so the
same prompt can score a little differently after a different predecessor. `noise` measures that
(the spread of f(x) re-scored after unrelated prompts); attributions smaller than it mean little.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from .._lazy import require
from ..errors import InputError

__all__ = ["SEGMENTS", "Scorer", "SegmentTokenizer", "TextExplanation", "explain_text", "fidelity"]

SEGMENTS = {"word": r"\W+", "sentence": r"(?<=[.!?])\s+"}


class SegmentTokenizer:
    """Splits text into segments that keep their trailing separators, so that the segments join
    back into exactly the original prompt (shap's SimpleTokenizer drops them, and with them the
    prompt's final punctuation)."""

    def __init__(self, split_pattern: str):
        import re

        self.pattern = re.compile(split_pattern)

    def __call__(self, text: str, return_offsets_mapping: bool = True) -> dict[str, Any]:
        if not text:
            return {"input_ids": [], "offset_mapping": []} if return_offsets_mapping else {"input_ids": []}
        starts = [0] + [m.end() for m in self.pattern.finditer(text) if 0 < m.end() < len(text)]
        starts = sorted(set(starts))
        bounds = list(zip(starts, starts[1:] + [len(text)]))
        out: dict[str, Any] = {"input_ids": [text[a:b] for a, b in bounds]}
        if return_offsets_mapping:
            out["offset_mapping"] = bounds
        return out


@dataclass
class Scorer:
    """f(prompts) -> log-odds of `positive`, memoised, counting the model calls it really makes."""

    decide: Callable[[str], Any]  # prompt -> Decision
    positive: str
    calls: int = 0
    cache: dict[str, float] = field(default_factory=dict)
    reuse: bool = True

    def __call__(self, prompts: Any) -> Any:
        np = require("numpy", "explain")
        prompts = [str(p) for p in prompts]
        order = sorted(set(prompts)) if self.reuse else list(prompts)
        for prompt in order:
            if self.reuse and prompt in self.cache:
                continue
            self.cache[prompt] = self.score(prompt)
        return np.array([[self.cache[p]] for p in prompts])

    def score(self, prompt: str) -> float:
        self.calls += 1
        return float(self.decide(prompt).log_odds(self.positive))


@dataclass
class TextExplanation:
    value: float
    base_value: float
    attributions: list[dict[str, Any]]  # {"segment", "value"} in prompt order
    evaluations: int  # model calls made for the explanation (after de-duplication)
    max_evals: int
    segments: str
    additivity_error: float
    tolerance: float
    noise: float | None
    seconds: float
    positive: str
    choices: list[str]

    @property
    def additive(self) -> bool:
        return self.additivity_error <= self.tolerance

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "additive": self.additive}


def explain_text(scorer: Scorer, prompt: str, *, choices: list[str], segments: str = "word", max_evals: int = 200,
                 batch_size: int = 64, noise_probes: int = 2) -> TextExplanation:
    shap = require("shap", "explain")
    if not prompt.strip():
        raise InputError("the prompt is empty: there is nothing to explain")
    if segments not in SEGMENTS:
        raise InputError(f"expected one of {', '.join(SEGMENTS)}", parameter="segments")
    masker = shap.maskers.Text(SegmentTokenizer(SEGMENTS[segments]))
    pieces = masker.tokenizer(prompt)["input_ids"]
    if len(pieces) < 2:
        raise InputError(f"the prompt has {len(pieces)} {segments} segment(s); at least two are needed")
    if max_evals < 4:
        raise InputError("at least 4 evaluations are needed", parameter="max_evals", value=max_evals)
    started = time.perf_counter()
    explainer = shap.Explainer(scorer, masker, algorithm="partition", output_names=[scorer.positive])
    before = scorer.calls
    # shap's Partition explainer evaluates in pairs and overshoots an odd budget by one: ask for an
    # even number so the budget is never exceeded
    result = explainer([prompt], max_evals=max_evals - max_evals % 2, batch_size=batch_size, silent=True)
    evaluations = scorer.calls - before
    values = [float(v) for v in result.values[0][:, 0]]
    base = float(result.base_values[0][0])
    value = scorer.cache[prompt]
    error = abs(sum(values) - (value - base))
    noise = _noise(scorer, prompt, noise_probes) if noise_probes else None
    return TextExplanation(
        value=value, base_value=base,
        attributions=[{"segment": str(s), "value": v} for s, v in zip(result.data[0], values)],
        evaluations=evaluations, max_evals=max_evals, segments=segments, additivity_error=error,
        tolerance=1e-6 * max(1.0, abs(value) + abs(base)), noise=noise,
        seconds=time.perf_counter() - started, positive=scorer.positive, choices=choices)


def _noise(scorer: Scorer, prompt: str, probes: int) -> float:
    """Spread of f(prompt) re-scored right after unrelated prompts (fresh calls, not the cache)."""
    values = [scorer.cache[prompt]]
    for i in range(probes):
        scorer.score("Unrelated question number %d: what colour is the sky?" % i)
        values.append(scorer.score(prompt))
    return max(values) - min(values)


def fidelity(scorer: Scorer, explanation: TextExplanation, *, k: int, random_sets: int = 10, seed: int = 0) -> dict[str, float]:
    """Score drop from deleting the top-k attributed segments vs k random ones (the same prompt)."""
    np = require("numpy", "explain")
    segments = [a["segment"] for a in explanation.attributions]
    k = min(k, len(segments) - 1)
    values = np.array([a["value"] for a in explanation.attributions])
    top = set(np.argsort(-values)[:k].tolist())

    def without(drop: set[int]) -> str:
        return "".join(s for i, s in enumerate(segments) if i not in drop)

    full = explanation.value
    top_drop = full - scorer([without(top)])[0][0]
    rng = np.random.default_rng(seed)
    random_drops = [full - scorer([without(set(rng.choice(len(segments), k, replace=False).tolist()))])[0][0]
                    for _ in range(random_sets)]
    return {"k": k, "top_k_drop": float(top_drop), "random_k_drop": float(np.mean(random_drops))}
