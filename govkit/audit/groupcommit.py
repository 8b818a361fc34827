"""Group commit: many callers, one writer connection, one fsync for everything queued.

Whoever finds no commit running leads: it commits everything queued, batch after batch while
more arrives (up to LEAD_ROUNDS), then hands the lead to the owner of the oldest queued item.
Coroutines never lead (that would block their event loop): a background thread leads for them.

Coroutines that one commit woke append again together, a moment later: the commit thread waits
up to GATHER_S for as many as the last batch held instead of spending an fsync on the first
alone (PostgreSQL's commit_delay, made adaptive: a wait that times out lowers the expectation).

Each caller waits on its own token queue (threads) or future (coroutines), so a commit wakes only the
callers whose records it wrote. A batch's callers are woken once the next batch is in its
fsync, where the GIL is free: their Python work overlaps the disk wait instead of delaying the
next commit's statements. Nobody is woken before their own records are durable.
"""

from __future__ import annotations

import asyncio
import functools
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ..errors import GovkitError, StoreError

__all__ = ["GroupCommit", "Pending"]

MAX_BATCH = 256
LEAD_ROUNDS = 4  # batches one leader commits back to back before handing the lead on
GATHER_S = 0.0005  # how long the commit thread waits for coroutines it expects to append again


@dataclass(eq=False)
class Pending:
    """One record on its way to disk; the commit function fills in `record` or `error`."""

    body: bytes
    contents: list[tuple[str, str]]
    journal: tuple[int, int, int, str, str] | None = None  # a stream journal row instead of a record
    seals: int | None = None  # the request seq whose stream journal this record takes over
    record: Any = None
    error: GovkitError | None = None
    settled: bool = False
    waiter: Any = None  # _ThreadWaiter or _FutureWaiter


class _ThreadWaiter:
    """A blocked thread's wake-up call: a token in a SimpleQueue (one C call to wait or wake,
    where threading.Event runs a Condition in Python). A stale token only makes the waiter look
    at the shared state once more."""

    __slots__ = ("tokens", "lead")
    can_lead = True

    def __init__(self) -> None:
        self.tokens: queue.SimpleQueue[None] = queue.SimpleQueue()
        self.lead = False

    def wake(self) -> None:
        self.tokens.put(None)

    def wait(self) -> None:
        self.tokens.get()


class _FutureWaiter:
    __slots__ = ("loop", "future")
    can_lead = False

    def __init__(self, loop: asyncio.AbstractEventLoop, future: asyncio.Future[None]) -> None:
        self.loop, self.future = loop, future


# commit(batch, before_sync): write the batch in one transaction, calling before_sync() just
# before the COMMIT; set each item's record, or its error (store errors are not raised).
CommitFunction = Callable[[list[Pending], Callable[[], None]], object]


class GroupCommit:
    def __init__(self, commit: CommitFunction, *, label: str):
        self._commit = commit
        self._label = label
        self._cond = threading.Condition()
        self._queue: list[Pending] = []
        self._leading = False
        self._closed = False
        self._background: threading.Thread | None = None
        self._background_turn = threading.Event()
        self._expected = 1
        self._gathering = False
        self._idle_waiters = 0  # callers of close() or exclusive() waiting for the lead to be free

    def submit(self, items: list[Pending]) -> None:
        """Queue items and return when all are settled; raise the first item's error."""
        with self._cond:
            self._check_open()
            alone = not self._leading and not self._queue and len(items) <= MAX_BATCH
            if not alone:
                waiter = _ThreadWaiter()
                for item in items:
                    item.waiter = waiter
                self._queue.extend(items)
                waiter.lead = not self._leading
            self._leading = True
        if alone:  # nothing else is being written: commit at once, without queue or wake-ups
            self._commit_alone(items)
            return
        last = items[-1]
        while not last.settled:
            if waiter.lead:
                waiter.lead = False
                self._lead()
                continue
            waiter.wait()
        for item in items:
            if item.error is not None:
                raise item.error

    def _commit_alone(self, items: list[Pending]) -> None:
        """Commit items of a caller that found the lead free, on its own thread; then hand the
        lead to whoever queued meanwhile."""
        try:
            self._commit(items, _no_wake)
        except BaseException as exc:
            self._interrupted(items, exc)
            raise
        finally:
            for item in items:
                item.settled = True
            self._handoff(may_continue=False)
        for item in items:
            if item.error is not None:
                raise item.error

    async def submit_async(self, item: Pending, *, inline_when_idle: bool = False) -> None:
        """Queue an item from a coroutine; the background thread commits it.

        With inline_when_idle, a caller that finds nothing else being written commits on its
        own thread instead: lower latency for a lone request (no hand-off to the commit thread
        and back), at the price of blocking the event loop for one fsync.
        """
        loop = asyncio.get_running_loop()
        with self._cond:
            self._check_open()
            lead = not self._leading
            self._leading = True
            inline = inline_when_idle and lead and not self._queue
            if not inline:
                future: asyncio.Future[None] = loop.create_future()
                item.waiter = _FutureWaiter(loop, future)
                self._queue.append(item)
                if self._gathering and len(self._queue) >= self._expected:
                    self._cond.notify_all()
        if inline:
            self._commit_alone([item])
            return
        if lead:  # the loop must not block on the disk: the background thread leads instead
            self._lead_in_background()
        await future
        if item.error is not None:
            raise item.error

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the lead: no batch is committed meanwhile (for purge and checkpoints)."""
        with self._cond:
            self._check_open()
            while self._leading:
                self._wait_for_idle()
            self._leading = True
        try:
            yield
        finally:
            self._handoff(may_continue=False)  # what was queued meanwhile gets a leader

    def close(self) -> None:
        """Wait for everything queued to be committed; refuse new work."""
        with self._cond:
            while self._leading or self._queue:
                self._wait_for_idle()
            self._closed = True
        if self._background is not None:
            self._background_turn.set()
            self._background.join()

    def _wait_for_idle(self) -> None:
        """Wait (holding self._cond) until the lead is given up."""
        self._idle_waiters += 1
        try:
            self._cond.wait()
        finally:
            self._idle_waiters -= 1

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"{self._label}: the audit log is closed")

    def _lead(self) -> None:
        committed: list[Pending] = []  # durable, callers not yet woken
        rounds = 0
        while True:
            with self._cond:
                batch = self._queue[:MAX_BATCH]
                del self._queue[:MAX_BATCH]
            try:
                if batch:
                    self._commit(batch, functools.partial(_wake, committed))
            except BaseException as exc:  # not a store error (those are set on the items): unblock all
                self._interrupted(batch, exc)
                _wake(committed + batch)
                self._handoff(may_continue=False)
                raise
            for item in batch:
                item.settled = True
            if batch and not isinstance(batch[0].waiter, _ThreadWaiter):
                self._expected = max(self._expected, len(batch))
            committed = batch
            rounds += 1
            if self._handoff(may_continue=rounds < LEAD_ROUNDS):
                _wake(committed)
                return

    def _gather(self) -> None:
        """Coroutines whose records the last commit made durable resume together and append
        again within moments: wait a little for them (at most GATHER_S) rather than spend an
        fsync on the first one alone and make the rest wait for it."""
        with self._cond:
            expected = self._expected
            if len(self._queue) >= expected:
                return
            deadline = time.monotonic() + GATHER_S
            self._gathering = True
            try:
                while len(self._queue) < expected and not self._closed:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
            finally:
                self._gathering = False
            self._expected = max(1, len(self._queue))

    def _interrupted(self, items: list[Pending], exc: BaseException) -> None:
        error = StoreError(f"{self._label}: append interrupted: {exc!r}")
        for item in items:
            item.error, item.settled = item.error or error, True

    def _handoff(self, *, may_continue: bool) -> bool:
        """Give up or pass on the lead. False: keep leading (more is queued)."""
        with self._cond:
            if self._queue and may_continue:
                return False  # more is queued: commit it without a hand-off gap
            if not self._queue:
                self._leading = False
                if self._idle_waiters:  # close() and exclusive() wait for this
                    self._cond.notify_all()
                return True
            successor = self._queue[0].waiter
            if successor.can_lead:
                successor.lead = True
        if successor.can_lead:
            successor.wake()
        else:
            self._lead_in_background()
        return True

    def _lead_in_background(self) -> None:
        if self._background is None:
            self._background = threading.Thread(target=self._background_leader, daemon=True,
                                                name=f"govkit-audit-commit:{self._label}")
            self._background.start()
        self._background_turn.set()

    def _background_leader(self) -> None:
        while True:
            self._background_turn.wait()
            self._background_turn.clear()
            if self._closed and not self._queue:
                return
            self._gather()
            try:
                self._lead()
            except BaseException:  # errors were set on the items and raised to their callers
                pass


def _no_wake() -> None:
    pass


def _wake(items: list[Pending]) -> None:
    futures: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
    for waiter in {id(item.waiter): item.waiter for item in items}.values():
        if isinstance(waiter, _FutureWaiter):
            futures.setdefault(waiter.loop, []).append(waiter.future)
        else:
            waiter.wake()
    for loop, batch in futures.items():  # one cross-thread call per event loop, not per record
        try:
            loop.call_soon_threadsafe(_settle_futures, batch)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass


def _settle_futures(futures: list[asyncio.Future[None]]) -> None:
    for future in futures:
        if not future.done():  # a cancelled caller's record is committed all the same
            future.set_result(None)
