"""append_async: coroutines share group commits with threads; every record durable and chained."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from govkit.audit import AuditLog
from govkit.errors import InvalidRecord, StoreError


def test_many_coroutines_and_threads_make_one_chain(tmp_path: Path, key_path: Path) -> None:
    with AuditLog(tmp_path / "a.db", private_key=key_path, checkpoint_every=100, create=True) as log:
        async def task(k: int) -> list[int]:
            return [(await log.append_async("inference", prompt=f"task {k} call {i}", session_id=f"t{k}")).seq
                    for i in range(50)]

        async def main() -> list[list[int]]:
            return await asyncio.gather(*(task(k) for k in range(16)))

        thread_seqs: list[int] = []
        thread = threading.Thread(target=lambda: thread_seqs.extend(log.append("feedback").seq for _ in range(100)))
        thread.start()
        task_seqs = [s for chunk in asyncio.run(main()) for s in chunk]
        thread.join()
        seqs = task_seqs + thread_seqs
        assert len(seqs) == len(set(seqs)) == 900
        for seq in seqs[:50]:
            assert log.get(seq) is not None  # committed before the coroutine resumed
        result = log.verify()
        assert result.ok and result.records == 1 + 900 + result.checkpoints


def test_async_errors_reach_the_caller(tmp_path: Path) -> None:
    async def main(log: AuditLog) -> None:
        with pytest.raises(InvalidRecord):
            await log.append_async("no_such_event")
        record = await log.append_async("incident")
        assert record.seq == 2

    with AuditLog(tmp_path / "a.db", create=True) as log:
        asyncio.run(main(log))
    with pytest.raises(StoreError, match="closed"):
        asyncio.run(log.append_async("incident"))


def test_a_cancelled_caller_does_not_stall_the_others(tmp_path: Path) -> None:
    with AuditLog(tmp_path / "a.db", create=True) as log:
        async def main() -> None:
            doomed = asyncio.ensure_future(log.append_async("feedback", details={"doomed": True}))
            others = [asyncio.ensure_future(log.append_async("feedback")) for _ in range(20)]
            doomed.cancel()
            await asyncio.gather(*others)

        asyncio.run(main())
        assert log.verify().ok
        assert log.stats()["records"] in (21, 22)  # the genesis; the cancelled record may already be committed


def test_inline_when_idle_commits_on_the_callers_thread_and_keeps_one_chain(tmp_path: Path) -> None:
    with AuditLog(tmp_path / "a.db", create=True) as log:
        async def main() -> None:
            lone = await log.append_async("feedback", inline_when_idle=True)
            assert log._group._background is None  # committed here: no commit thread was needed
            # Each finds the store idle in turn (an inline commit does not yield to the loop).
            crowd = await asyncio.gather(*(log.append_async("feedback", inline_when_idle=True) for _ in range(20)))
            assert lone.seq == 2 and sorted(r.seq for r in crowd) == list(range(3, 23))

        asyncio.run(main())
        assert log.verify().ok
