"""One writing process at a time, woken the moment the last one is done, with a timeout.

SQLite alone makes a process that finds the write lock taken sleep 1, 2, 5 ... 100 ms between
tries, while the process that just committed takes the lock again at once: with a few processes
appending, one of them can wait a second or more (and, under sustained load, run past its busy
timeout) while the others append. So govkit's writers first queue on an flock of `<store>.lock`:
the kernel wakes a waiter as soon as the holder lets go, and SQLite's lock is then free.

flock itself has no timeout. An uncontended lock is taken at once; a contended one is waited for
by a helper thread (started at the first contention), so that the caller can give up after the
busy timeout. A wait given up on releases the lock as soon as it gets it. The helper locks
through a descriptor of its own: flock locks belong to an open file, so its lock and the
caller's usual one exclude each other.

Where the lock file cannot be opened (a read-only folder), writers rely on SQLite's lock alone.
Processes that do not take this lock (other tools, older govkit) are still kept out by SQLite.
One holder at a time per WriterLock: the AuditLog serialises its own writes.
"""

from __future__ import annotations

import fcntl
import os
import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import StoreBusy

__all__ = ["WriterLock"]

_flock = fcntl.flock
_EXCLUSIVE_NOW = fcntl.LOCK_EX | fcntl.LOCK_NB
_UNLOCK = fcntl.LOCK_UN


class _Request:
    __slots__ = ("answer", "guard", "abandoned")

    def __init__(self) -> None:
        self.answer: queue.SimpleQueue[OSError | None] = queue.SimpleQueue()
        self.guard = threading.Lock()
        self.abandoned = False


class WriterLock:
    def __init__(self, store: Path, timeout_s: float):
        self.path = Path(f"{store}.lock")
        self.store_label = str(store)
        self.timeout_s = timeout_s
        self._fd: int | None = None
        self._opened = False  # the lock file is made at the first write, not by readers
        self._requests: queue.SimpleQueue[_Request | None] | None = None
        self._helper_fd: int | None = None

    def _open(self) -> int | None:
        try:
            return os.open(self.path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError:
            try:  # a lock file we may read but could not have created
                return os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                return None

    @contextmanager
    def held(self) -> Iterator[None]:
        """Hold the lock for one write transaction; StoreBusy after the timeout."""
        fd = self.acquire()
        try:
            yield
        finally:
            self.release(fd)

    def acquire(self) -> int | None:
        """Take the lock (StoreBusy after the timeout); pass what it returns to release().
        None: go on with SQLite's lock alone."""
        fd = self._fd
        if fd is None:
            if self._opened:
                return None
            fd = self._fd = self._open()
            self._opened = True
            if fd is None:
                return None
        try:
            _flock(fd, _EXCLUSIVE_NOW)
            return fd
        except BlockingIOError:
            return self._wait()
        except OSError:  # a file system without flock: SQLite's lock still keeps writers apart
            os.close(fd)
            self._fd = None
            return None

    @staticmethod
    def release(fd: int | None) -> None:
        if fd is not None:
            _flock(fd, _UNLOCK)

    def _wait(self) -> int | None:
        if self._requests is None:
            self._helper_fd = self._open()
            if self._helper_fd is None:
                return None
            self._requests = queue.SimpleQueue()
            threading.Thread(target=self._helper, args=(self._requests, self._helper_fd), daemon=True,
                             name=f"govkit-audit-writer-lock:{self.path}").start()
        request = _Request()
        self._requests.put(request)
        try:
            error = request.answer.get(timeout=self.timeout_s)
        except BaseException as exc:  # the timeout, or an interrupt: give the wait up either way
            with request.guard:
                request.abandoned = True
                got_it = not request.answer.empty() and request.answer.get() is None
            if got_it:  # it came just now: let the next writer in
                self.release(self._helper_fd)
            if isinstance(exc, queue.Empty):
                raise StoreBusy(f"{self.store_label}: another govkit process kept the audit store locked for "
                                f"{self.timeout_s:g} s; nothing was written, committed records are intact") from None
            raise
        if error is not None:
            raise StoreBusy(f"{self.store_label}: cannot lock {self.path}: {error}")
        assert self._helper_fd is not None
        return self._helper_fd

    @staticmethod
    def _helper(requests: queue.SimpleQueue[_Request | None], fd: int) -> None:
        while (request := requests.get()) is not None:
            error: OSError | None = None
            try:
                _flock(fd, fcntl.LOCK_EX)
            except OSError as exc:
                error = exc
            with request.guard:
                if not request.abandoned:
                    request.answer.put(error)
                    continue
            if error is None:  # the caller gave up waiting: let the next writer in
                _flock(fd, _UNLOCK)
        os.close(fd)  # the helper's own descriptor: closed once no wait can still be using it

    def close(self) -> None:
        if self._requests is not None:
            self._requests.put(None)
            self._requests = None
        if self._fd is not None:
            os.close(self._fd)
        self._fd, self._opened = None, True
