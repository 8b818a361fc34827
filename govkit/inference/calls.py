"""One model call, whatever carries it (proxy, httpx transport, llama-cpp wrapper, decorator):
what to read from a request and an answer, in every body shape the fronted servers speak
(OpenAI, llama.cpp's native routes, Ollama, Anthropic messages, the Responses API), and the
audit record it becomes.

Nothing the model said is left out of the record: every choice (`n > 1`) and every tool or
function call goes into the response text (content table, redacted per policy), with one digest
per choice and per tool call's arguments in the chain.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

from ..digests import sha256_digest, tagged
from ..timestamps import utc_now
from .routes import kind_of

__all__ = ["SAMPLING_KEYS", "Answer", "Call", "EventStream", "answer_of", "kind_of", "prompt_of", "read_answer"]

SAMPLING_KEYS = ("temperature", "top_p", "top_k", "min_p", "max_tokens", "max_completion_tokens", "seed",
                 "stop", "n", "presence_penalty", "frequency_penalty", "repeat_penalty", "logprobs",
                 "top_logprobs", "response_format", "logit_bias", "n_predict", "num_predict", "max_output_tokens")
# Sampling values that are free text: kept as digests (a stop sequence may be a name or a number).
_TEXT_SAMPLING = frozenset({"stop", "logit_bias", "response_format"})
# Sampling values chained as they are, when they have their shape: numbers (flags for these).
_FLAG_SAMPLING = frozenset({"logprobs"})
# What the prompt itself carries (recorded as content); every other field of a request may change
# the answer and is chained: by name with its value's digest when govkit knows the field, and all
# unknown fields together as one digest (their names may be anything, personal data included).
_PROMPT_FIELDS = frozenset({"messages", "prompt", "input", "content", "system", "instructions", "input_prefix",
                            "input_suffix", "input_extra", "model", "stream", "options"})
KNOWN_PARAMETERS = frozenset({
    "grammar", "json_schema", "response_format", "tools", "tool_choice", "functions", "function_call",
    "parallel_tool_calls", "chat_template", "chat_template_kwargs", "reasoning_effort", "reasoning_format", "think",
    "format", "template", "raw", "suffix", "images", "keep_alive", "n_probs", "samplers", "mirostat", "mirostat_tau",
    "mirostat_eta", "typical_p", "tfs_z", "dynatemp_range", "dynatemp_exponent", "xtc_probability", "xtc_threshold",
    "dry_multiplier", "dry_base", "dry_allowed_length", "dry_penalty_last_n", "repeat_last_n", "penalize_nl",
    "ignore_eos", "cache_prompt", "id_slot", "lora", "slot_id", "n_keep", "n_discard", "min_keep", "top_n_sigma",
    "t_max_predict_ms", "post_sampling_probs", "return_tokens", "timings_per_token", "user", "metadata", "store",
    "service_tier", "prediction", "modalities", "audio", "web_search_options", "truncate", "dimensions",
    "encoding_format", "stream_options", "guided_json", "guided_regex", "guided_choice", "guided_grammar",
    "extra_body", "add_generation_prompt", "continue_final_message", "documents", "top_a", "thinking",
    "stop_sequences", "tool_resources", "truncation", "previous_response_id", "include", "text", "reasoning",
    "max_tool_calls", "background", "add_special_tokens", "skip_special_tokens", "spaces_between_special_tokens",
    "logits_processors", "best_of", "use_beam_search", "length_penalty", "early_stopping", "echo", "context",
    "num_ctx", "num_keep", "num_batch", "num_gpu", "num_thread", "numa", "low_vram", "vocab_only", "use_mmap",
    "use_mlock"})
_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/+@-]{0,159}")
_SSE_END = re.compile(rb"\r?\n\r?\n")
# The most of one answer's text a record keeps (characters per choice): a longer answer passes
# through whole, and its record keeps this much of it, the full length and the full text's sha256.
RECORD_TEXT_LIMIT = 4 * 1024 * 1024
_TOOL_NAME = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")


def _mapping(value: Any) -> dict[str, Any]:
    """`value` when it is a JSON object, else an empty one (a field of an unexpected shape)."""
    return value if isinstance(value, dict) else {}


def _digest(text: str) -> str:
    return sha256_digest(text.encode("utf-8", "surrogatepass"))


def _json_digest(value: Any) -> str:
    return _digest(json.dumps(value, sort_keys=True, ensure_ascii=False, default=str))


def _number(value: Any) -> bool:
    return type(value) in (int, float) and (type(value) is int or value == value and abs(value) != float("inf"))


def _parameters(fields: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """(sampling, parameters) for the chain: sampling values of their known shape as they are
    (numbers as numbers), anything else of them as a digest; every other field that may change the
    answer by name with its value's digest, and the unknown ones as one digest of them all."""
    sampling: dict[str, Any] = {}
    parameters: dict[str, str] = {}
    unknown: dict[str, Any] = {}
    for key, value in fields.items():
        if key in SAMPLING_KEYS:
            if key in _TEXT_SAMPLING:
                sampling[key] = _json_digest(value)
            elif (_number(value) and key not in _FLAG_SAMPLING) or (type(value) is bool and key in _FLAG_SAMPLING):
                sampling[key] = value
            else:  # a value of no known shape: its digest, never the value
                sampling[key] = _json_digest(value)
        elif key in _PROMPT_FIELDS:
            continue
        elif key in KNOWN_PARAMETERS:
            parameters[key] = _json_digest(value)
        else:
            unknown[key] = value
    if unknown:
        parameters["unknown"] = _json_digest(unknown)
    return sampling, parameters


def _media(payload: dict[str, Any]) -> str | None:
    """The digest of every part of the messages that is not text (images, audio, files): the
    prompt text leaves them out, and they change the answer."""
    parts = []
    for message in payload.get("messages") or ():
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            parts += [part for part in content if isinstance(part, dict) and part.get("type") not in (None, "text")]
        if isinstance(message, dict) and message.get("images"):  # Ollama
            parts.append({"images": message["images"]})
    return _json_digest(parts) if parts else None


def _model_name(name: str) -> str:
    """A model name as servers spell them, chained as it is; anything else (a name with spaces, or
    personal data sent in the field) as its digest."""
    if _MODEL_NAME.fullmatch(name) and not _redactor().spans(name):
        return name
    return _digest(name)


@functools.cache
def _redactor() -> Any:
    from ..audit.redact import Redactor

    return Redactor()


@dataclass
class Answer:
    """What the model answered: per choice its text, tool calls and finish reason."""

    choices: list[dict[str, Any]] = field(default_factory=list)  # {index, text, tool_calls, finish_reason}
    usage: dict[str, Any] = field(default_factory=dict)

    @property
    def finish_reason(self) -> str | None:
        reasons = [c.get("finish_reason") for c in self.choices if c.get("finish_reason")]
        return str(reasons[0]) if reasons else None

    @property
    def text(self) -> str | None:
        """The response as recorded: a lone plain answer as it is; several choices or any tool
        call each under a header naming it, so nothing is lost."""
        if not self.choices:
            return None
        if len(self.choices) == 1 and not self.choices[0].get("tool_calls"):
            return self.choices[0].get("text")
        parts = []
        for choice in self.choices:
            index = choice.get("index", 0)
            if choice.get("text") is not None:
                parts.append(f"[choice {index}]\n{choice['text']}")
            for call in choice.get("tool_calls") or ():
                parts.append(f"[choice {index} tool call {call.get('name') or '?'}]\n{call.get('arguments') or ''}")
        return "\n".join(parts)

    def chained(self) -> list[dict[str, Any]] | None:
        """Digests for the chain, when there is more than one plain answer to tell apart (or one
        whose text was too long to keep whole)."""
        if len(self.choices) <= 1 and not any(c.get("tool_calls") or c.get("truncated") for c in self.choices):
            return None
        out = []
        for choice in self.choices:
            item: dict[str, Any] = {"index": choice.get("index", 0)}
            if choice.get("finish_reason"):
                item["finish_reason"] = str(choice["finish_reason"])
            if choice.get("truncated"):
                item["truncated"] = choice["truncated"]  # {"chars", "sha256"} of the whole text
            elif choice.get("text") is not None:
                item["content_sha256"] = _digest(choice["text"])
            calls = []
            for call in choice.get("tool_calls") or ():
                name = str(call.get("name") or "")
                calls.append({"name": name if _TOOL_NAME.fullmatch(name) else _digest(name),
                              "arguments_sha256": _digest(call.get("arguments") or "")})
            if calls:
                item["tool_calls"] = calls
            out.append(item)
        return out


@dataclass
class Call:
    """An audited call in progress; `record()` gives the keyword arguments of AuditLog.append."""

    kind: str
    endpoint: str
    fields: dict[str, Any] = field(default_factory=dict)
    prompt: str | None = None
    ts_start: str = field(default_factory=utc_now)
    started: float = field(default_factory=time.perf_counter)
    request_seq: int | None = None  # the seq of its `request` record, once chained

    def read_request(self, payload: dict[str, Any], raw: bytes | None = None) -> None:
        self.prompt = prompt_of(self.kind, payload)
        if self.prompt is None and raw is not None:  # a shape we do not know: the whole body
            self.prompt = raw.decode("utf-8", "replace")
        options = _mapping(payload.get("options"))  # Ollama
        sampling, parameters = _parameters({**options, **{k: v for k, v in payload.items() if k != "options"}})
        media = _media(payload)
        if media:
            parameters["media"] = media
        self.fields["sampling"] = sampling
        if parameters:
            self.fields["request_params"] = parameters
        if isinstance(payload.get("model"), str):
            self.fields["model_version"] = _model_name(payload["model"])

    def record(self, *, status: str, error: str | None = None, response: str | None = None,
               usage: dict[str, Any] | None = None, finish_reason: str | None = None,
               answer: Answer | None = None) -> dict[str, Any]:
        if answer is not None:
            response, usage, finish_reason = answer.text, answer.usage, answer.finish_reason
        usage = usage or {}
        fields = dict(prompt=self.prompt, response=response, ts_start=self.ts_start, ts_end=utc_now(),
                      latency_ms=round((time.perf_counter() - self.started) * 1000, 3), status=status,
                      error=error, finish_reason=finish_reason,
                      input_tokens=_int(usage.get("prompt_tokens", usage.get("input_tokens"))),
                      output_tokens=_int(usage.get("completion_tokens", usage.get("output_tokens"))),
                      endpoint=self.endpoint, **self.fields)
        chained = answer.chained() if answer is not None else None
        if chained:
            fields["details"] = {**fields.get("details", {}), "choices": chained}
        return fields


class EventStream:
    """Splits a streamed answer (server-sent events, or Ollama's JSON lines) into events as they
    complete and passes them through, except the last one seen, which it holds back until the
    next arrives: so the final chunk (and `[DONE]`) reaches the client only once the caller has
    committed the record and releases `held`. Assembles the answer for the record."""

    def __init__(self, kind: str, *, lines: bool = False):
        self.kind = kind
        self.lines = lines  # newline-delimited JSON (Ollama) instead of server-sent events
        self.buffer = b""
        self._scanned = 0  # bytes of the buffer already searched for an event's end
        self.last = b""  # the newest complete event, not yet passed on
        self.done_events = b""
        self.done = False
        self.answer = Answer()
        self._by_index: dict[int, dict[str, Any]] = {}
        self._parts: dict[int, list[str]] = {}  # each choice's text, as it arrived (joined once, at the end)
        self._chars: dict[int, int] = {}  # each choice's whole length
        self._hashes: dict[int, Any] = {}  # each choice's whole text, hashed as it arrives

    @property
    def held(self) -> bytes:
        return self.last + self.done_events + self.buffer

    def result(self) -> Answer:
        """The answer as assembled so far (each choice's text joined once per call)."""
        for index, parts in self._parts.items():
            choice = self._by_index[index]
            choice["text"] = "".join(parts)
            total = self._chars[index]
            if total > RECORD_TEXT_LIMIT:
                choice["truncated"] = {"chars": total, "sha256": tagged(self._hashes[index])}
                choice["text"] += f"\n[... {total - RECORD_TEXT_LIMIT} more characters not kept; see the record's sha256]"
        self.answer.choices = [self._by_index[i] for i in sorted(self._by_index)]
        return self.answer

    def feed(self, chunk: bytes) -> bytes:
        self.buffer += chunk
        ready = []
        while True:
            # Search only what is new (and the three bytes before it a separator may straddle):
            # a huge event arriving in many chunks costs linear time, not quadratic.
            since = max(0, self._scanned - 3)
            if self.lines:
                end = self.buffer.find(b"\n", since)
                if end < 0:
                    self._scanned = len(self.buffer)
                    break
                event, self.buffer = self.buffer[:end + 1], self.buffer[end + 1:]
                data = event.strip()
            else:
                match = _SSE_END.search(self.buffer, since)
                if match is None:
                    self._scanned = len(self.buffer)
                    break
                event, self.buffer = self.buffer[:match.end()], self.buffer[match.end():]
                data = b"".join(line[5:].strip() for line in event.splitlines() if line.startswith(b"data:"))
            self._scanned = 0
            if data == b"[DONE]":
                self.done = True
                self.done_events += event
                continue
            if self.last:
                ready.append(self.last)
            self.last = event
            self._parse(data)
        return b"".join(ready)

    def _parse(self, data: bytes) -> None:
        if not data:
            return
        try:
            chunk = json.loads(data)
        except ValueError:
            return
        self.add(chunk)

    def _choice(self, index: Any) -> dict[str, Any]:
        index = index if isinstance(index, int) else 0
        return self._by_index.setdefault(index, {"index": index, "text": None})

    def _append_text(self, index: Any, piece: Any) -> None:
        if not isinstance(piece, str):
            return
        index = self._choice(index)["index"]
        parts = self._parts.setdefault(index, [])
        kept = self._chars.get(index, 0)
        if kept < RECORD_TEXT_LIMIT:
            parts.append(piece[:RECORD_TEXT_LIMIT - kept])
        self._chars[index] = kept + len(piece)
        self._hashes.setdefault(index, hashlib.sha256()).update(piece.encode("utf-8", "surrogatepass"))

    def _tool(self, index: Any, slot: Any) -> dict[str, Any]:
        calls = self._choice(index).setdefault("tool_calls", [])
        slot = slot if isinstance(slot, int) else len(calls)
        while len(calls) <= slot:
            calls.append({"name": "", "arguments": ""})
        return calls[slot]

    def add(self, chunk: Any) -> None:
        """Take one decoded stream chunk, in any of the shapes the fronted servers stream."""
        if not isinstance(chunk, dict):
            return
        if isinstance(chunk.get("usage"), dict) and chunk["usage"]:
            self.answer.usage = chunk["usage"]
        if isinstance(chunk.get("choices"), list):  # OpenAI chat and completions
            for choice in chunk["choices"]:
                if not isinstance(choice, dict):
                    continue
                index = choice.get("index", 0)
                delta = _mapping(choice.get("delta"))
                self._append_text(index, delta.get("content") if self.kind == "chat" else choice.get("text"))
                if self.kind == "chat" and "content" not in delta and isinstance(choice.get("text"), str):
                    self._append_text(index, choice["text"])
                for call in delta.get("tool_calls") or ():
                    if isinstance(call, dict):
                        tool = self._tool(index, call.get("index"))
                        function = _mapping(call.get("function"))
                        tool["name"] += str(function.get("name") or "")
                        tool["arguments"] += str(function.get("arguments") or "")
                if isinstance(delta.get("function_call"), dict):
                    tool = self._tool(index, 0)
                    tool["name"] += str(delta["function_call"].get("name") or "")
                    tool["arguments"] += str(delta["function_call"].get("arguments") or "")
                if choice.get("finish_reason"):
                    self._choice(index)["finish_reason"] = choice["finish_reason"]
            return
        kind = chunk.get("type")
        if isinstance(kind, str):  # Anthropic messages and the Responses API: typed events
            self._typed(kind, chunk)
            return
        message = chunk.get("message")
        if isinstance(message, dict):  # Ollama /api/chat
            self._append_text(0, message.get("content"))
            for call in message.get("tool_calls") or ():
                called = call.get("function") if isinstance(call, dict) else None
                if isinstance(called, dict):
                    tool = self._tool(0, None)
                    tool["name"] = str(called.get("name") or "")
                    tool["arguments"] = _as_arguments(called.get("arguments"))
        elif isinstance(chunk.get("response"), str):  # Ollama /api/generate
            self._append_text(0, chunk["response"])
        elif isinstance(chunk.get("content"), str):  # llama.cpp /completion, /infill
            self._append_text(0, chunk["content"])
        if chunk.get("done") is True:  # Ollama's last line
            self.done = True
            self._choice(0)["finish_reason"] = chunk.get("done_reason") or "stop"
            self.answer.usage = {"prompt_tokens": chunk.get("prompt_eval_count"),
                                 "completion_tokens": chunk.get("eval_count")}
        if chunk.get("stop") is True:  # llama.cpp's native stream ends with stop: true
            self.done = True
            self._choice(0)["finish_reason"] = chunk.get("stop_type") or "stop"
            if isinstance(chunk.get("tokens_predicted"), int):
                self.answer.usage = {"prompt_tokens": chunk.get("tokens_evaluated"),
                                     "completion_tokens": chunk["tokens_predicted"]}

    def _typed(self, kind: str, chunk: dict[str, Any]) -> None:
        if kind == "content_block_start":
            block = _mapping(chunk.get("content_block"))
            if block.get("type") == "tool_use":
                self._tool(0, None)["name"] = str(block.get("name") or "")
        elif kind == "content_block_delta":
            delta = _mapping(chunk.get("delta"))
            if delta.get("type") == "input_json_delta":
                calls = self._choice(0).get("tool_calls") or [self._tool(0, None)]
                calls[-1]["arguments"] += str(delta.get("partial_json") or "")
            else:
                self._append_text(0, delta.get("text"))
        elif kind == "message_delta":
            delta = _mapping(chunk.get("delta"))
            if delta.get("stop_reason"):
                self._choice(0)["finish_reason"] = delta["stop_reason"]
        elif kind == "message_stop":
            self.done = True
        elif kind == "response.output_text.delta":
            self._append_text(0, chunk.get("delta"))
        elif kind == "response.completed":
            self.done = True
            response = _mapping(chunk.get("response"))
            final = read_answer("responses", response)
            if final.choices:
                self._by_index = {c["index"]: c for c in final.choices}
                self._parts, self._chars, self._hashes = {}, {}, {}  # the final answer says it all
            self.answer.usage = final.usage or self.answer.usage


def prompt_of(kind: str, payload: dict[str, Any]) -> str | None:
    """The prompt text of a request body, or None when it holds none of the known fields."""
    if kind == "chat":
        messages = payload.get("messages")
        if not isinstance(messages, list):
            return None
        lines = []
        system = payload.get("system")  # Anthropic: the system prompt beside the messages
        if system is not None:
            lines.append(f"system: {_text_of(system)}")
        for message in messages:
            if not isinstance(message, dict):
                continue
            lines.append(f"{message.get('role', '?')}: {_text_of(message.get('content'))}")
            for call in message.get("tool_calls") or ():
                function = call.get("function") if isinstance(call, dict) else None
                if isinstance(function, dict):
                    lines.append(f"tool call {function.get('name')}: {_as_arguments(function.get('arguments'))}")
        return "\n".join(lines)
    if kind == "responses":
        parts = [f"instructions: {payload['instructions']}"] if isinstance(payload.get("instructions"), str) else []
        value = payload.get("input")
        if isinstance(value, str):
            parts.append(value)
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, dict):
                    role = item.get("role", item.get("type", "?"))
                    parts.append(f"{role}: {_text_of(item.get('content', item.get('output')))}")
        return "\n".join(parts) if parts else None
    keys = {"completion": ("system", "prompt", "input_prefix", "input_suffix", "input_extra"),
            "embedding": ("input", "content", "prompt")}.get(kind)
    if keys is None:
        return None
    found = [_text_of(payload[key]) for key in keys if key in payload]
    return "\n".join(found) if found else None


def _text_of(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "\n".join(_text_of(part.get("text", part.get("content", "")) if isinstance(part, dict) else part)
                         for part in value)
    if value is None:
        return ""
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _as_arguments(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)


def read_answer(kind: str, answer: Any) -> Answer:
    """Every choice and tool call of a whole (not streamed) answer; TypeError on an answer of no
    known shape. A choice's text past RECORD_TEXT_LIMIT is cut, its length and sha256 kept."""
    return _capped(_read_answer(kind, answer))


def _capped(answer: Answer) -> Answer:
    for choice in answer.choices:
        text = choice.get("text")
        if isinstance(text, str) and len(text) > RECORD_TEXT_LIMIT and not choice.get("truncated"):
            choice["truncated"] = {"chars": len(text), "sha256": _digest(text)}
            choice["text"] = (text[:RECORD_TEXT_LIMIT] + f"\n[... {len(text) - RECORD_TEXT_LIMIT} more characters "
                              "not kept; see the record's sha256]")
    return answer


def _read_answer(kind: str, answer: Any) -> Answer:
    if not isinstance(answer, dict):
        raise TypeError("the answer is not a JSON object")
    usage = _mapping(answer.get("usage"))
    if kind == "embedding":
        return Answer([], usage)
    if kind == "other":
        return Answer([{"index": 0, "text": json.dumps(answer, ensure_ascii=False, sort_keys=True)}], usage)
    result = Answer([], usage)
    if isinstance(answer.get("choices"), list):  # OpenAI
        for position, choice in enumerate(answer["choices"]):
            index = choice.get("index", position)
            message = _mapping(choice.get("message"))
            text = message.get("content") if kind == "chat" else choice.get("text")
            tools = [{"name": str((c.get("function") or {}).get("name") or ""),
                      "arguments": _as_arguments((c.get("function") or {}).get("arguments") or "")}
                     for c in message.get("tool_calls") or () if isinstance(c, dict)]
            if isinstance(message.get("function_call"), dict):
                tools.append({"name": str(message["function_call"].get("name") or ""),
                              "arguments": _as_arguments(message["function_call"].get("arguments") or "")})
            result.choices.append({"index": index, "text": text if isinstance(text, str) else None,
                                   "finish_reason": choice.get("finish_reason"),
                                   **({"tool_calls": tools} if tools else {})})
        return result
    if isinstance(answer.get("output"), list):  # the Responses API
        texts, tools = [], []
        for item in answer["output"]:
            if not isinstance(item, dict):
                continue
            if item.get("type") == "function_call":
                tools.append({"name": str(item.get("name") or ""), "arguments": _as_arguments(item.get("arguments") or "")})
            for part in item.get("content") or ():
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    texts.append(part["text"])
        result.choices.append({"index": 0, "text": "".join(texts) if texts or not tools else None,
                               "finish_reason": answer.get("status"), **({"tool_calls": tools} if tools else {})})
        return result
    if isinstance(answer.get("content"), list):  # Anthropic messages
        texts, tools = [], []
        for block in answer["content"]:
            if isinstance(block, dict) and block.get("type") == "text":
                texts.append(str(block.get("text") or ""))
            elif isinstance(block, dict) and block.get("type") == "tool_use":
                tools.append({"name": str(block.get("name") or ""), "arguments": _as_arguments(block.get("input"))})
        result.choices.append({"index": 0, "text": "".join(texts) if texts or not tools else None,
                               "finish_reason": answer.get("stop_reason"), **({"tool_calls": tools} if tools else {})})
        return result
    stream = EventStream(kind)  # Ollama and llama.cpp's native answers: one chunk of their stream
    stream.add(answer)
    parsed = stream.result()
    if not parsed.choices:
        raise TypeError("the answer holds no choice, message or content")
    parsed.usage = parsed.usage or usage
    return parsed


def answer_of(kind: str, answer: Any) -> tuple[str | None, dict[str, Any], str | None]:
    parsed = read_answer(kind, answer)
    return parsed.text, parsed.usage, parsed.finish_reason


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
