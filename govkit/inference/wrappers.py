"""One line of code to audit a model called in-process: an OpenAI-compatible client, a
llama-cpp-python `Llama`, or any function that takes a prompt and returns text."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .._lazy import require
from ..audit import AuditLog
from .calls import SAMPLING_KEYS, Call, EventStream, answer_of
from .fingerprint import ArtifactIdentity, fingerprint_artifact

__all__ = ["AuditedLlama", "audited", "audited_client"]


def _identity(model_artifact: str | Path | None, log: AuditLog) -> ArtifactIdentity | None:
    if model_artifact is None:
        return None
    return fingerprint_artifact(model_artifact, cache_file=log.path.with_name("artifacts.json"))


def audited_client(client: Any, log: AuditLog | None = None, *, model_artifact: str | Path | None = None,
                   model_id: str | None = None, purpose: str | None = None) -> Any:
    """The same OpenAI-compatible client (openai.OpenAI or AsyncOpenAI), with every chat,
    completion and embedding call recorded in `log` (default: from ./govkit.toml)."""
    import importlib

    from .transport import transport_classes

    # The HTTP library the client is built on: httpx, or httpx2 for recent openai releases.
    bases = {cls.__module__.split(".")[0] for cls in type(getattr(client, "_client", None)).__mro__}
    module = "httpx2" if "httpx2" in bases else "httpx"
    httpx = importlib.import_module(module)
    sync_transport, async_transport = transport_classes(module)
    log = log or AuditLog.open()
    options = dict(identity=_identity(model_artifact, log), model_id=model_id, purpose=purpose)
    if "Async" in type(client).__name__:
        http_client: Any = httpx.AsyncClient(transport=async_transport(log, **options), timeout=client.timeout)
    else:
        http_client = httpx.Client(transport=sync_transport(log, **options), timeout=client.timeout)
    return client.with_options(http_client=http_client)


class AuditedLlama:
    """A llama_cpp.Llama whose completions, chat completions and embeddings are audited.

    Everything else passes through to the wrapped object. Identity comes from the model file
    the Llama was loaded from.
    """

    def __init__(self, llm: Any, log: AuditLog | None = None, *, model_id: str | None = None,
                 purpose: str | None = None):
        llama_cpp = require("llama_cpp", "llama")

        self._llm = llm
        self._log = log or AuditLog.open()
        identity = _identity(getattr(llm, "model_path", None), self._log)
        self._base = {**(identity.record_fields() if identity else {}), "runtime": "llama-cpp-python",
                      "runtime_version": llama_cpp.__version__}
        for key, value in (("model_id", model_id), ("purpose", purpose)):
            if value:
                self._base[key] = value

    def create_chat_completion(self, messages: list[dict[str, Any]], **kwargs: Any) -> Any:
        return self._run("chat", "create_chat_completion", {"messages": messages, **kwargs})

    def create_completion(self, prompt: str, **kwargs: Any) -> Any:
        return self._run("completion", "create_completion", {"prompt": prompt, **kwargs})

    __call__ = create_completion

    def create_embedding(self, input: Any, **kwargs: Any) -> Any:  # noqa: A002  (llama_cpp's own name)
        return self._run("embedding", "create_embedding", {"input": input, **kwargs})

    def __getattr__(self, name: str) -> Any:
        return getattr(self._llm, name)

    def _run(self, kind: str, method: str, payload: dict[str, Any]) -> Any:
        call = Call(kind, f"llama_cpp.Llama.{method}", dict(self._base))
        call.read_request(payload)
        try:
            result = getattr(self._llm, method)(**payload)
        except Exception as exc:
            self._log.append("inference", **call.record(status="error", error=f"{type(exc).__name__}: {exc}"))
            raise
        if payload.get("stream"):
            return self._stream(call, result)
        text, usage, finish = answer_of(kind, result)
        self._log.append("inference", **call.record(status="ok", response=text, usage=usage, finish_reason=finish))
        return result

    def _stream(self, call: Call, chunks: Iterator[Any]) -> Iterator[Any]:
        events = EventStream(call.kind)
        last = None
        try:
            for chunk in chunks:
                if last is not None:
                    yield last
                events.add(chunk)
                last = chunk
        except Exception as exc:
            answer = events.result()
            self._log.append("inference", **call.record(status="error", error=f"{type(exc).__name__}: {exc}",
                                                        response=answer.text, finish_reason=answer.finish_reason))
            raise
        # The last chunk waits until the record is durable.
        answer = events.result()
        self._log.append("inference", **call.record(status="ok", response=answer.text, usage=answer.usage,
                                                    finish_reason=answer.finish_reason))
        if last is not None:
            yield last


def audited(log: AuditLog | None = None, *, model_id: str | None = None, model_artifact: str | Path | None = None,
            purpose: str | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate `fn(prompt, **params) -> text` (sync or async): each call becomes a record.

    Keyword arguments named like sampling parameters (temperature, max_tokens, seed, ...) are
    recorded as the sampling settings.
    """
    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        state: dict[str, Any] = {}

        def start(prompt: Any, kwargs: dict[str, Any]) -> tuple[AuditLog, Call]:
            if "log" not in state:
                state["log"] = log or AuditLog.open()
                identity = _identity(model_artifact, state["log"])
                state["base"] = {**(identity.record_fields() if identity else {}),
                                 **{k: v for k, v in (("model_id", model_id), ("purpose", purpose)) if v}}
            call = Call("completion", f"{fn.__module__}.{fn.__qualname__}", dict(state["base"]))
            call.prompt = prompt if isinstance(prompt, str) else str(prompt)
            call.fields["sampling"] = {k: kwargs[k] for k in SAMPLING_KEYS if k in kwargs}
            return state["log"], call

        def outcome(result: Any) -> dict[str, Any]:
            return dict(status="ok", response=result if isinstance(result, str) else repr(result))

        if inspect.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def async_wrapper(prompt: Any, *args: Any, **kwargs: Any) -> Any:
                audit_log, call = start(prompt, kwargs)
                try:
                    result = await fn(prompt, *args, **kwargs)
                except Exception as exc:
                    await audit_log.append_async("inference", **call.record(status="error", error=f"{type(exc).__name__}: {exc}"))
                    raise
                await audit_log.append_async("inference", **call.record(**outcome(result)))
                return result
            return async_wrapper

        @functools.wraps(fn)
        def wrapper(prompt: Any, *args: Any, **kwargs: Any) -> Any:
            audit_log, call = start(prompt, kwargs)
            try:
                result = fn(prompt, *args, **kwargs)
            except Exception as exc:
                audit_log.append("inference", **call.record(status="error", error=f"{type(exc).__name__}: {exc}"))
                raise
            audit_log.append("inference", **call.record(**outcome(result)))
            return result
        return wrapper
    return decorate
