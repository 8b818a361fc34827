"""In-process auditing: an openai client through govkit's httpx transport, a llama-cpp-python
Llama, and a decorated function. Same records as the proxy, against the real model."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest

import govkit
from govkit.audit import AuditLog

from .servers import free_port

pytestmark = pytest.mark.slow
openai = pytest.importorskip("openai")

ASK = dict(model="smollm2", messages=[{"role": "user", "content": "List two fruits. Reply to bob@example.org."}],
           temperature=0, max_tokens=16)


def sha256_of(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def test_audited_openai_client(llama, tmp_path: Path) -> None:
    url, gguf = llama
    with AuditLog(tmp_path / "a.db", create=True) as log:
        client = govkit.audited_client(openai.OpenAI(base_url=url, api_key="-"), log, model_artifact=gguf,
                                       model_id="fruit-bot")
        plain = client.chat.completions.create(**ASK)
        streamed = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(**ASK, stream=True)
                           if c.choices)
        client.models.list()  # not an inference call: not audited
        first, second = log.query(event_type="inference")
        assert first.artifact_sha256 == second.artifact_sha256 == sha256_of(gguf)
        assert first.model_id == "fruit-bot" and first.endpoint.endswith("/chat/completions")
        assert first.output_tokens == plain.usage.completion_tokens and first.status == "ok"
        assert log.content(first)["response"] == plain.choices[0].message.content
        assert log.content(second)["response"] == streamed and second.status == "ok"
        assert log.content(first)["prompt"].endswith("Reply to [EMAIL].")
        assert log.stats()["records"] == 3 and log.verify().ok


def test_audited_async_client(llama, tmp_path: Path) -> None:
    url, _ = llama

    async def main(log: AuditLog) -> list[str]:
        client = govkit.audited_client(openai.AsyncOpenAI(base_url=url, api_key="-"), log)
        answers = await asyncio.gather(*(client.chat.completions.create(**ASK) for _ in range(3)))
        return [a.choices[0].message.content for a in answers]

    with AuditLog(tmp_path / "a.db", create=True) as log:
        texts = asyncio.run(main(log))
        records = list(log.query(event_type="inference"))
        assert len(records) == 3 and sorted(log.content(r)["response"] for r in records) == sorted(texts)


def test_connection_failure_is_recorded_and_raised(tmp_path: Path) -> None:
    with AuditLog(tmp_path / "a.db", create=True) as log:
        client = govkit.audited_client(openai.OpenAI(base_url=f"http://127.0.0.1:{free_port()}/v1", api_key="-",
                                                     max_retries=0), log)
        with pytest.raises(openai.APIConnectionError):
            client.chat.completions.create(**ASK)
        [record] = log.query(event_type="inference")
        assert record.status == "error" and "ConnectError" in record.error


def test_audited_llama_in_process(llama, tmp_path: Path) -> None:
    llama_cpp = pytest.importorskip("llama_cpp")
    _, gguf = llama
    llm = llama_cpp.Llama(model_path=str(gguf), n_ctx=512, n_threads=2, verbose=False, seed=1)
    with AuditLog(tmp_path / "a.db", create=True) as log:
        audited = govkit.AuditedLlama(llm, log, model_id="fruit-bot")
        messages = ASK["messages"]
        answer = audited.create_chat_completion(messages, temperature=0, max_tokens=12)
        chunks = list(audited.create_chat_completion(messages, temperature=0, max_tokens=12, stream=True))
        text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
        plain, streamed = log.query(event_type="inference")
        assert plain.runtime == "llama-cpp-python" and plain.runtime_version == llama_cpp.__version__
        assert plain.artifact_sha256 == sha256_of(gguf) and plain.quantization == "Q4_1"
        assert plain.input_tokens == answer["usage"]["prompt_tokens"]
        assert log.content(plain)["response"] == answer["choices"][0]["message"]["content"]
        assert log.content(streamed)["response"] == text and streamed.finish_reason in ("stop", "length")
        assert audited.n_ctx() == 512  # everything else passes through
        assert log.verify().ok


def test_audited_decorator(tmp_path: Path) -> None:
    with AuditLog(tmp_path / "a.db", create=True) as log:
        @govkit.audited(log, model_id="rules-v2")
        def classify(prompt: str, *, temperature: float = 0.0) -> str:
            if "boom" in prompt:
                raise RuntimeError("model crashed")
            return "approve"

        @govkit.audited(log, model_id="rules-v2", purpose="evaluation")
        async def classify_async(prompt: str) -> str:
            return "deny"

        assert classify("customer 42, card 4111 1111 1111 1111", temperature=0.2) == "approve"
        with pytest.raises(RuntimeError):
            classify("boom")
        assert asyncio.run(classify_async("customer 43")) == "deny"
        ok, failed, evaluation = log.query(event_type="inference")
        assert ok.sampling == {"temperature": 0.2} and ok.status == "ok" and ok.model_id == "rules-v2"
        assert log.content(ok) == {"prompt": "customer 42, card [PAYMENT_CARD]", "response": "approve"}
        assert failed.status == "error" and "model crashed" in failed.error
        assert evaluation.purpose == "evaluation" and evaluation.endpoint.endswith("classify_async")
