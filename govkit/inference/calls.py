"""One model call, whatever carries it (proxy, httpx transport, llama-cpp wrapper, decorator):
what to read from an OpenAI-style request and answer, and the audit record it becomes."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

from ..audit.store import utc_now

__all__ = ["AUDITED", "SAMPLING_KEYS", "Call", "EventStream", "answer_of", "kind_of", "prompt_of"]

AUDITED = {"/v1/chat/completions": "chat", "/v1/completions": "completion", "/v1/embeddings": "embedding"}
SAMPLING_KEYS = ("temperature", "top_p", "top_k", "min_p", "max_tokens", "max_completion_tokens", "seed",
                 "stop", "n", "presence_penalty", "frequency_penalty", "repeat_penalty", "logprobs",
                 "top_logprobs", "response_format", "logit_bias")
_EVENT_END = re.compile(rb"\r?\n\r?\n")


def kind_of(path: str) -> str | None:
    """The audited kind of an API path, wherever the client mounts the API (…/v1/chat/completions)."""
    for suffix, kind in AUDITED.items():
        if path == suffix or path.endswith(suffix[3:]):
            return kind
    return None


@dataclass
class Call:
    """An audited call in progress; `record()` gives the keyword arguments of AuditLog.append."""

    kind: str
    endpoint: str
    fields: dict[str, Any] = field(default_factory=dict)
    prompt: str | None = None
    ts_start: str = field(default_factory=utc_now)
    started: float = field(default_factory=time.perf_counter)

    def read_request(self, payload: dict[str, Any]) -> None:
        self.prompt = prompt_of(self.kind, payload)
        self.fields["sampling"] = {k: payload[k] for k in SAMPLING_KEYS if k in payload}
        if isinstance(payload.get("model"), str):
            self.fields["model_version"] = payload["model"]

    def record(self, *, status: str, error: str | None = None, response: str | None = None,
               usage: dict[str, Any] | None = None, finish_reason: str | None = None) -> dict[str, Any]:
        usage = usage or {}
        return dict(prompt=self.prompt, response=response, ts_start=self.ts_start, ts_end=utc_now(),
                    latency_ms=round((time.perf_counter() - self.started) * 1000, 3), status=status,
                    error=error, finish_reason=finish_reason, input_tokens=_int(usage.get("prompt_tokens")),
                    output_tokens=_int(usage.get("completion_tokens")), endpoint=self.endpoint, **self.fields)


class EventStream:
    """Splits a server-sent-event stream into events as they complete: passes each through at
    once, except `data: [DONE]`, which it holds; assembles the answer for the record."""

    def __init__(self, kind: str):
        self.kind = kind
        self.buffer = b""
        self.held = b""
        self.done = False
        self.parts: list[str] = []
        self.usage: dict[str, Any] | None = None
        self.finish_reason: str | None = None

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def feed(self, chunk: bytes) -> bytes:
        self.buffer += chunk
        ready = []
        while match := _EVENT_END.search(self.buffer):
            event, self.buffer = self.buffer[:match.end()], self.buffer[match.end():]
            data = b"".join(line[5:].strip() for line in event.splitlines() if line.startswith(b"data:"))
            if data == b"[DONE]":
                self.done = True
                self.held += event
                continue
            ready.append(event)
            self._parse(data)
        return b"".join(ready)

    def _parse(self, data: bytes) -> None:
        try:
            chunk = json.loads(data)
        except ValueError:
            return
        self.add(chunk)

    def add(self, chunk: Any) -> None:
        """Take one decoded stream chunk (as llama-cpp-python yields them in-process)."""
        try:
            choice = (chunk.get("choices") or [{}])[0]
        except (AttributeError, IndexError):
            return
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        piece = (choice.get("delta") or {}).get("content") if self.kind == "chat" else choice.get("text")
        if isinstance(piece, str):
            self.parts.append(piece)
        if choice.get("finish_reason"):
            self.finish_reason = choice["finish_reason"]


def prompt_of(kind: str, payload: dict[str, Any]) -> str | None:
    if kind == "chat":
        messages = payload.get("messages")
        if not isinstance(messages, list):
            return None
        lines = []
        for message in messages:
            if not isinstance(message, dict):
                continue
            content = message.get("content")
            if isinstance(content, list):  # content parts: keep the text ones
                content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            lines.append(f"{message.get('role', '?')}: {content if isinstance(content, str) else ''}")
        return "\n".join(lines)
    key = "prompt" if kind == "completion" else "input"
    value = payload.get(key)
    if isinstance(value, list):
        return "\n".join(str(v) for v in value)
    return value if isinstance(value, str) else None


def answer_of(kind: str, answer: dict[str, Any]) -> tuple[str | None, dict[str, Any], str | None]:
    usage = answer.get("usage") or {}
    if kind == "embedding":
        return None, usage, None
    choice = answer["choices"][0]
    text = choice["message"].get("content") if kind == "chat" else choice.get("text")
    return (text if isinstance(text, str) else None), usage, choice.get("finish_reason")


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


