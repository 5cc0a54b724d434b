"""MONAI's ``ThreadDataLoader``, with the errors of its background thread raised where the batches are used.

MONAI's ``ThreadDataLoader`` draws batches on a background thread (``ThreadBuffer``). When drawing raises (a random
transform that fails on one item), that thread ends, its traceback goes to standard error, and the loop over the
loader simply stops: the epoch ends early and training goes on as if nothing happened. This subclass keeps the error
and raises it in the loop, after the batches drawn before it, so that the run fails with its reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import monai.data
from monai.data.thread_buffer import buffer_iterator

__all__ = ["ThreadDataLoader"]


class ThreadDataLoader(monai.data.ThreadDataLoader):
    """``monai.data.ThreadDataLoader`` (same arguments) whose drawing errors are raised, not swallowed."""

    def __iter__(self) -> Iterator[Any]:
        failures: list[Exception] = []

        def batches() -> Iterator[Any]:
            try:
                yield from super(monai.data.ThreadDataLoader, self).__iter__()  # the plain DataLoader's batches
            except Exception as e:  # kept for the consumer's thread; this one would only print it
                failures.append(e)

        yield from buffer_iterator(batches(), self.buffer_size, self.buffer_timeout, self.repeats)
        if failures:
            raise failures[0]
