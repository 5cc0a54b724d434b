"""The overlap helpers: reads one ahead, records in input order, a bounded queue, errors raised where collected."""

from __future__ import annotations

import threading
import time

import pytest

from pipeline.inference.overlap import InlineExecutor, InOrder, read_ahead, stage_executor


@pytest.mark.parametrize("overlap", [False, True])
def test_read_ahead_keeps_order_and_reads_one_ahead(overlap: bool) -> None:
    started: list[int] = []

    def read(i: int) -> int:
        started.append(i)
        if i == 2:
            raise ValueError("item 2 is bad")
        return i * 10

    with stage_executor(overlap, "read") as executor:
        seen = []
        for item, future in read_ahead(executor, read, range(5)):
            time.sleep(0.01)  # the caller's work on this item; the next read runs meanwhile
            assert max(started) <= item + 1  # never more than one read ahead
            try:
                seen.append((item, future.result()))
            except ValueError as e:
                seen.append((item, str(e)))
    assert seen == [(0, 0), (1, 10), (2, "item 2 is bad"), (3, 30), (4, 40)]


def test_in_order_keeps_submission_order_and_bounds_what_waits() -> None:
    records: list[dict] = []
    running = []
    lock = threading.Lock()

    def job(name: str, delay: float, emit) -> None:
        with lock:
            running.append(name)
        time.sleep(delay)
        emit({"input": name})

    with stage_executor(True, "write") as executor:
        outputs = InOrder(executor, records, max_pending=2)
        outputs.submit(job, "a", 0.05)
        outputs.add({"input": "failed-b"})
        outputs.submit(job, "c", 0.0)
        outputs.submit(job, "d", 0.0)  # a third job: waits for "a" to be collected first
        assert [r["input"] for r in records][:2] == ["a", "failed-b"]
        outputs.finish()
    assert [r["input"] for r in records] == ["a", "failed-b", "c", "d"]


def test_in_order_raises_a_job_error_and_keeps_the_rest() -> None:
    records: list[dict] = []

    def job(name: str, emit) -> None:
        if name == "bad":
            raise MemoryError("out of memory")
        emit({"input": name})

    outputs = InOrder(InlineExecutor(), records, max_pending=1)
    outputs.submit(job, "a")
    with pytest.raises(MemoryError):
        outputs.submit(job, "bad")
        outputs.finish()
    outputs.submit(job, "c")
    outputs.finish()
    assert [r["input"] for r in records] == ["a", "c"]
    with pytest.raises(ValueError, match="max_pending"):
        InOrder(InlineExecutor(), records, max_pending=0)


def test_an_interrupt_inside_a_job_keeps_what_it_had_written() -> None:
    """Ctrl-C in the middle of a batch of images: the records of the images already written are kept, and the
    interrupt, not a job's error, is what propagates."""
    records: list[dict] = []

    def batch(names: list[str], emit) -> None:
        for name in names:
            if name == "stop":
                raise KeyboardInterrupt
            emit({"input": name})

    outputs = InOrder(InlineExecutor(), records, max_pending=2)
    outputs.submit(batch, ["a", "b"])
    with pytest.raises(KeyboardInterrupt):
        try:
            outputs.submit(batch, ["c", "d", "stop", "e"])
        finally:
            outputs.finish(interrupted=True)
    assert [r["input"] for r in records] == ["a", "b", "c", "d"]
