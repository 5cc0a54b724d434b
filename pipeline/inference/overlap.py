"""Overlap the stages of inference: read the next input and write the last one's outputs while the model runs.

Inference over a study is read -> predict -> write, input after input. Only the middle stage needs the model; reading
DICOM files and writing SEG, NIfTI and PNG files mostly wait on disk, zlib and Python. Here the next input is read on a
background thread (:func:`read_ahead`) and outputs are written on another (:class:`InOrder`), so that the model is
busy while they run, with a bound on what is held in memory: one input read ahead and ``max_pending`` inputs waiting
to be written. Results come back in input order, whatever order the threads finish in.

``overlap=False`` gives :class:`InlineExecutor`, which runs each job at once on the calling thread: the same code
path, one stage after another, for debugging and for measuring what the overlap gains.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any, TypeVar

__all__ = ["InOrder", "InlineExecutor", "read_ahead", "stage_executor"]

T = TypeVar("T")
R = TypeVar("R")


class InlineExecutor(Executor):
    """An executor that runs each job when it is submitted, on the calling thread; its future is already done."""

    def submit(self, fn: Callable[..., R], /, *args: Any, **kwargs: Any) -> Future[R]:
        future: Future[R] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as e:  # kept for .result(), as a thread would keep it; KeyboardInterrupt still stops now
            future.set_exception(e)
        return future


def stage_executor(overlap: bool, name: str) -> Executor:
    """One background thread named ``pipeline-<name>`` when ``overlap``; else :class:`InlineExecutor`."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"pipeline-{name}") if overlap else InlineExecutor()


def read_ahead(executor: Executor, read: Callable[[T], R], items: Iterable[T]) -> Iterator[tuple[T, Future[R]]]:
    """Yield ``(item, future of read(item))`` in order, with the next item's read already submitted.

    While the caller works on one item, ``executor`` reads the next, so at most two reads are held at a time. A read
    that raised raises again from ``future.result()``, where the caller handles it like any other failure of that
    item.
    """
    iterator = iter(items)
    pending: deque[tuple[T, Future[R]]] = deque()
    for item in iterator:
        pending.append((item, executor.submit(read, item)))
        break
    while pending:
        current = pending.popleft()
        for item in iterator:
            pending.append((item, executor.submit(read, item)))
            break
        yield current


class InOrder:
    """Records of background jobs, appended to ``records`` in submission order, with at most ``max_pending`` waiting.

    Each job is called as ``job(*args, emit)`` and passes every record of what it wrote (failures included) to
    ``emit`` as soon as that output is complete, so that a run interrupted in the middle of a job still records
    exactly the outputs that exist. A job's exception is raised again from the next :meth:`submit`, :meth:`add` or
    :meth:`finish` that reaches it.

    Args:
        executor: where jobs run (:func:`stage_executor`).
        records: the list that receives the records, in order.
        max_pending: the most jobs submitted and not yet collected; :meth:`submit` waits for the oldest beyond it.
            This bounds the inputs held in memory while the writer falls behind.
    """

    def __init__(self, executor: Executor, records: list[dict[str, Any]], max_pending: int = 2) -> None:
        if max_pending < 1:
            raise ValueError(f"max_pending must be at least 1, got {max_pending}")
        self.executor = executor
        self.records = records
        self.max_pending = max_pending
        self._queue: deque[_Job] = deque()

    def submit(self, job: Callable[..., None], /, *args: Any) -> None:
        """Run ``job(*args, emit)`` in the background; its records follow those submitted or added before it."""
        entry = _Job()
        self._queue.append(entry)  # before the job starts: an interrupt inside it still finds what it emitted
        entry.future = self.executor.submit(job, *args, entry.records.append)
        self._collect(keep=self.max_pending)

    def add(self, *records: dict[str, Any]) -> None:
        """Records known now (a failure before any output was written), placed after those already submitted."""
        entry = _Job()
        entry.records.extend(records)
        self._queue.append(entry)
        self._collect(keep=self.max_pending)

    def finish(self, interrupted: bool = False) -> None:
        """Wait for every job and collect its records.

        Args:
            interrupted: the run is being stopped (Ctrl-C, SIGTERM): jobs not started are cancelled, the running
                one is waited for, what every job emitted is collected, and no job's error is raised over the
                interrupt.
        """
        if not interrupted:
            self._collect(keep=0)
            return
        while self._queue:
            entry = self._queue.popleft()
            if entry.future is not None and not entry.future.cancel():  # a job not started yet never starts
                with contextlib.suppress(Exception):  # the interrupt is what the caller reports
                    entry.future.result()
            self.records.extend(entry.records)

    def _collect(self, keep: int) -> None:
        """Move finished jobs' records from the queue's front to ``records``; wait while more than ``keep`` wait."""
        while self._queue:
            head = self._queue[0]
            running = head.future is not None and not head.future.done()
            if running and sum(e.future is not None for e in self._queue) <= keep:
                return
            if head.future is not None:
                try:
                    head.future.result()  # while it stays queued: an interrupt here still finds its records
                except Exception:  # the job's own error: it is done with, and raised to the caller
                    self._queue.popleft()
                    self.records.extend(head.records)
                    raise
            self._queue.popleft()
            self.records.extend(head.records)


class _Job:
    """One queued job: its future (``None`` for records added directly) and the records it emitted so far."""

    def __init__(self) -> None:
        self.future: Future[None] | None = None
        self.records: list[dict[str, Any]] = []
