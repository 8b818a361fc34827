"""Decisions from a language model, deterministically, through govkit's audited path.

The model answers a prompt with one of a fixed set of choices. Two ways to read the answer,
both at temperature 0:
  logprob   one token is generated; each choice is scored by the log-probability the model gave
            the tokens that begin it (log-sum-exp over the top 20), and the best choice wins.
            A choice none of whose opening tokens is among the top 20 gets no score.
  generate  a short answer is generated and must be exactly one choice (case-insensitive, trailing
            punctuation ignored).
An answer that names no choice is unparseable (`Decision.choice` None), never guessed. Every call
is an `inference` record (purpose `evaluation` or `explanation`); the record id comes back in a
response header, so each decision cites its record. The bias tests, the explanations and the
proxy's explanation sampler all decide through here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._lazy import require
from ..audit import AuditLog
from ..errors import EndpointError, GovkitError, InputError

__all__ = ["METHODS", "Decision", "Decider", "parse_choice", "parse_choices", "score_choices", "split_chat_prompt"]

METHODS = ("logprob", "generate")
TOP_LOGPROBS = 20


@dataclass(frozen=True)
class Decision:
    choice: str | None  # None: unparseable
    scores: dict[str, float | None]  # log-probability per choice (logprob method)
    answer: str
    record_id: str | None = None
    floor: float | None = None  # the lowest top-20 log-probability: an upper bound for an unlisted choice

    def log_odds(self, positive: str) -> float:
        """log P(positive) - log P(any other choice); an unlisted choice counts at `floor`."""
        def score(choice: str) -> float:
            value = self.scores.get(choice)
            if value is not None:
                return value
            if self.floor is None:
                raise GovkitError("no log-probabilities to score the choices with")
            return self.floor

        if all(value is None for value in self.scores.values()):
            raise GovkitError(f"none of the choices {', '.join(self.scores)} is among the model's 20 most likely "
                              f"first tokens (it began its answer with {self.answer!r}); make the prompt ask for "
                              "exactly one of them")
        others = [score(c) for c in self.scores if c != positive]
        top = max(others)
        return score(positive) - (top + math.log(sum(math.exp(o - top) for o in others)))

    def positive_probability(self, positive: str) -> float | None:
        """P(positive) among the choices, from their scores (softmax over the scored choices)."""
        scored = {c: s for c, s in self.scores.items() if s is not None}
        if not scored:
            return None
        top = max(scored.values())
        total = sum(math.exp(s - top) for s in scored.values())
        return math.exp(scored[positive] - top) / total if positive in scored else 0.0


def score_choices(top_logprobs: list[dict[str, Any]], choices: list[str]) -> dict[str, float | None]:
    """Each choice's score: log-sum-exp of the top tokens that begin it and begin no other choice."""
    lowered = [c.lower() for c in choices]
    buckets: dict[str, list[float]] = {c: [] for c in choices}
    for item in top_logprobs:
        token = str(item.get("token", "")).strip().lower()
        if not token:
            continue
        matches = [c for c, low in zip(choices, lowered) if low.startswith(token)]
        if len(matches) == 1:
            buckets[matches[0]].append(float(item["logprob"]))
    out: dict[str, float | None] = {}
    for choice, values in buckets.items():
        if values:
            top = max(values)
            out[choice] = top + math.log(sum(math.exp(v - top) for v in values))
        else:
            out[choice] = None
    return out


def parse_choice(answer: str, choices: list[str]) -> str | None:
    cleaned = re.sub(r"[\s\"'`.,;:!?)\]]+$", "", answer.strip()).strip("\"'`*( ").lower()
    found = [c for c in choices if cleaned == c.lower()]
    return found[0] if len(found) == 1 else None


@dataclass
class Decider:
    """Asks one OpenAI-compatible endpoint, or an in-process llama-cpp-python model, for decisions."""

    log: AuditLog
    choices: list[str]
    method: str = "logprob"
    endpoint: str | None = None
    model_path: Path | None = None
    model_id: str | None = None
    model_artifact: Path | None = None  # the file the endpoint serves: its identity goes into every record
    system: str | None = None
    purpose: str = "evaluation"  # the audit records' purpose
    timeout_s: float = 120.0
    subject_ref: str | None = None  # whose decision the calls are about (an erasure request reaches them)
    _call: Callable[[dict[str, Any]], tuple[dict[str, Any], str | None]] | None = field(default=None, repr=False)
    _fields: dict[str, Any] = field(default_factory=dict, repr=False)  # the fields every call's record carries

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise InputError(f"expected one of {', '.join(METHODS)}", parameter="method", value=self.method)
        if (self.endpoint is None) == (self.model_path is None):
            raise InputError("give an endpoint URL or a model file (one of them)", parameter=("endpoint", "model_path"))
        self._call = self._http() if self.endpoint else self._in_process()
        self.about(self.subject_ref)

    def about(self, subject_ref: str | None) -> None:
        """The data subject the next calls are about: their records carry its subject_ref, so that
        `govkit audit purge --subject` erases them with the decision they explain or test."""
        self.subject_ref = subject_ref
        if subject_ref:
            self._fields["subject_ref"] = subject_ref
        else:
            self._fields.pop("subject_ref", None)

    def _http(self) -> Callable[[dict[str, Any]], tuple[dict[str, Any], str | None]]:
        from .transport import RECORD_ID_HEADER

        client, audited = audited_client(self.log, model_artifact=self.model_artifact, model_id=self.model_id,
                                         purpose=self.purpose, timeout_s=self.timeout_s)
        self._fields = audited.base  # about() changes what every later record carries
        assert self.endpoint is not None
        url = self.endpoint.rstrip("/") + "/chat/completions"

        def call(body: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
            response = post_chat(client, url, body, self.endpoint or "")
            if response.status_code >= 400:
                raise EndpointError(f"the model endpoint {url} answered {response.status_code}")
            return response.json(), response.headers.get(RECORD_ID_HEADER)

        return call

    def _in_process(self) -> Callable[[dict[str, Any]], tuple[dict[str, Any], str | None]]:
        llama_cpp = require("llama_cpp", "llama")
        assert self.model_path is not None
        model_path = self.model_path
        from .wrappers import AuditedLlama

        # llama-cpp-python returns log-probabilities only when it keeps logits for every position
        # (n_ctx x vocabulary floats); a short context keeps that affordable.
        logprob = self.method == "logprob"
        llm = AuditedLlama(llama_cpp.Llama(model_path=str(self.model_path), n_ctx=1024 if logprob else 2048,
                                           logits_all=logprob, verbose=False, seed=0),
                           self.log, model_id=self.model_id, purpose=self.purpose)
        self._fields = llm._base

        def call(body: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
            before = self.log.stats()["head_seq"]
            try:
                answer = llm.create_chat_completion(**{k: v for k, v in body.items() if k != "model"})
            except (ValueError, RuntimeError) as exc:
                raise GovkitError(f"the in-process model {model_path.name} failed: {exc}") from None
            after = [r for r in self.log.query(event_type="inference", limit=1, newest_first=True) if r.seq > before]
            return answer, after[0].record_id if after else None

        return call

    def request(self, prompt: str) -> dict[str, Any]:
        messages = ([{"role": "system", "content": self.system}] if self.system else []) + [
            {"role": "user", "content": prompt}]
        body: dict[str, Any] = {"model": self.model_id or "default", "messages": messages, "temperature": 0,
                                "seed": 0}
        if self.method == "logprob":
            body.update(max_tokens=1, logprobs=True, top_logprobs=TOP_LOGPROBS)
        else:
            body.update(max_tokens=max(8, max(len(c) for c in self.choices) // 2 + 4))
        return body

    def decide(self, prompt: str) -> Decision:
        assert self._call is not None
        answer, record_id = self._call(self.request(prompt))
        try:
            choice = answer["choices"][0]
            text = choice["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            raise EndpointError("the model answered in an unexpected shape (no choices[0].message.content)") from None
        if self.method == "logprob":
            try:
                top = choice["logprobs"]["content"][0]["top_logprobs"]
            except (KeyError, IndexError, TypeError):
                raise EndpointError("the model server returned no log-probabilities: it must support 'logprobs' and "
                                  "'top_logprobs' on /v1/chat/completions (llama.cpp's server, llama-cpp-python, "
                                  "vLLM and Ollama do); for bias tests, the generate method needs neither") from None
            scores = score_choices(top, self.choices)
            scored = {c: s for c, s in scores.items() if s is not None}
            picked = max(scored, key=lambda c: scored[c]) if scored else None
            floor = min((float(t["logprob"]) for t in top), default=None)
            return Decision(picked, scores, text, record_id, floor)
        return Decision(parse_choice(text, self.choices), {c: None for c in self.choices}, text, record_id)


def parse_choices(choices: str | Sequence[str], positive: str) -> list[str]:
    """The allowed answers ("approve,deny" or a list), checked: two or more, distinct, `positive`
    among them, and no two beginning with the same word (the first answer token must tell them apart)."""
    items = [c.strip() for c in (choices.split(",") if isinstance(choices, str) else choices) if c.strip()]
    if len(items) < 2 or len(set(c.lower() for c in items)) != len(items):
        raise InputError(f"expected two or more distinct answers, got '{choices}'", parameter="choices")
    if positive not in items:
        raise InputError(f"'{positive}' is not one of the choices {', '.join(items)}", parameter="positive")
    firsts = [c.split()[0].lower() for c in items]
    shared = sorted({f for f in firsts if firsts.count(f) > 1})
    if shared:
        raise InputError(f"{', '.join(shared)} begins more than one choice; the model's first answer token must "
                         "tell the choices apart (e.g. approve,deny)", parameter="choices")
    return items


def split_chat_prompt(stored: str) -> tuple[str | None, str]:
    """(system message, last user message) of a chat prompt as the audit log stores it ("role: text" lines)."""
    starts = [m.start() for m in re.finditer(r"(?m)^user: ", stored)]
    if not starts:
        return None, stored
    user = stored[starts[-1] + len("user: "):]
    system = re.match(r"system: (.*?)(?=\n(?:user|assistant): |\Z)", stored, re.S)
    return (system.group(1) if system else None), user


def audited_client(log: AuditLog, *, model_artifact: Path | None, model_id: str | None, purpose: str,
                   timeout_s: float, headers: dict[str, str] | None = None) -> tuple[Any, Any]:
    """An httpx client whose every call leaves an audit record in `log` (with the model file's
    identity and this purpose), and its audited transport."""
    httpx = require("httpx", "bias")
    from .fingerprint import fingerprint_artifact
    from .transport import transport_classes

    identity = (fingerprint_artifact(model_artifact, cache_file=log.path.with_name("artifacts.json"))
                if model_artifact else None)
    transport, _ = transport_classes("httpx")
    audited = transport(log, identity=identity, model_id=model_id, purpose=purpose)
    return httpx.Client(transport=audited, timeout=timeout_s, headers=headers), audited


def post_chat(client: Any, url: str, body: dict[str, Any], endpoint: str) -> Any:
    """POST a chat request; a URL that is not http(s) is an input error, a failed call an endpoint error."""
    httpx = require("httpx", "bias")
    try:
        return client.post(url, json=body)
    except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
        raise InputError(f"endpoint '{endpoint}' is not an http(s) URL the model could be reached at: {exc}") from None
    except httpx.HTTPError as exc:
        raise EndpointError(f"the model endpoint {url} failed: {type(exc).__name__}: {exc}") from None
