"""One series at a time, as a PACS node handles it: segment it once, send its results once, remember both.

:class:`SeriesNode` is what the watcher (:mod:`pipeline.pacs.watch`) and the listener (:mod:`pipeline.pacs.listen`)
share. They bring a series' files into a folder; the node runs the bundle's inference runner on it
(:meth:`~pipeline.inference.InferenceRunner.retargeted`: the model stays loaded) into ``<output_dir>/<SeriesUID>/``,
with its own ``summary.json`` and ``report.html``, sends the DICOM results (:func:`~pipeline.pacs.send.send_results`)
and records each step in the state folder (:mod:`pipeline.pacs.state`). It logs one line per series: what was
received, what came of it, and where it was sent.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipeline.atomic import interrupts_deferred
from pipeline.inference.runner import InferenceRunner
from pipeline.pacs.errors import PacsError
from pipeline.pacs.send import Destination, read_summary, send_results
from pipeline.pacs.state import NodeState, SeriesRecord

__all__ = ["FIRST_RETRY_S", "MAX_ATTEMPTS", "MAX_RETRY_S", "SeriesNode", "signals_ignored"]

MAX_ATTEMPTS = 2
"""How many times a series is segmented when each try stops the node (the process is killed) before it is failed."""
FIRST_RETRY_S = 30.0
"""The wait before results that could not be sent are sent again; it doubles after each failure."""
MAX_RETRY_S = 900.0
"""The longest wait between two tries to send results."""

logger = logging.getLogger("pipeline.pacs")


class SeriesNode:
    """Segment received series and send their results, each once.

    Args:
        runner: the bundle's inference runner (its model, series rules and writers); each series gets a copy of it
            aimed at the series' folder.
        output_dir: where each series' outputs go, in a folder named by its SeriesInstanceUID.
        state: the node's open state folder.
        target: where results are sent, or ``None`` to only write them.
    """

    def __init__(
        self, runner: InferenceRunner, output_dir: str | os.PathLike, state: NodeState, target: Destination | None
    ) -> None:
        self.runner = runner
        self.output_dir = Path(output_dir)
        self.state = state
        self.target = target
        # results not sent yet (from before a restart, or a send that failed): series -> (next try, wait after it)
        self._pending: dict[str, tuple[float, float]] = {
            record.series_uid: (0.0, FIRST_RETRY_S) for record in state.with_status("segmented", "not_sent")
        }

    def taken(self, series_uid: str) -> bool:
        """Whether the series has been taken on (it is not segmented again)."""
        record = self.state.get(series_uid)
        return record is not None and record.status != "segmenting"

    def segment(self, folder: Path, study_uid: str, series_uid: str, source: str) -> SeriesRecord:
        """Segment the series whose files are in ``folder``, write its outputs, send them, and log one line.

        A series whose segmenting stopped the node :data:`MAX_ATTEMPTS` times (the record still said ``segmenting`` at
        the next start: the process was killed, e.g. out of memory) is marked ``failed`` instead, so that one series
        cannot stop a node at every start.

        Args:
            folder: the series' files (only this series).
            study_uid: its StudyInstanceUID.
            series_uid: its SeriesInstanceUID.
            source: where it came from, for the record and the log line.

        Returns:
            The series' record, done or ``not_sent``.
        """
        tick = time.perf_counter()
        instances = sum(1 for p in Path(folder).rglob("*.dcm"))
        before = self.state.get(series_uid)
        attempts = (before.attempts if before is not None else 0) + 1
        record = SeriesRecord(series_uid, study_uid, source=source, output=series_uid, instances=instances)
        if attempts > MAX_ATTEMPTS:
            self.state.put(
                record,
                status="failed",
                attempts=attempts - 1,
                reason=f"segmenting it stopped the node {attempts - 1} times (killed, e.g. out of memory); not tried "
                "again: see the log of those runs",
            )
        else:
            self.state.put(record, status="segmenting", attempts=attempts)
            self._run(record, folder)
        if record.status == "segmented":
            self._send(record)
        logger.info("%s", _line(record, self._outcome(record), time.perf_counter() - tick))
        return record

    def _run(self, record: SeriesRecord, folder: Path) -> None:
        """Run the model on the series and record the outcome: ``segmented``, ``skipped`` or ``failed``."""
        runner = self.runner.retargeted(folder, self.output_dir / record.output)
        try:
            found = runner.inputs()
            if not len(found):
                reasons = "; ".join(reason for _, reason in found.rejected) or "no DICOM image in it"
                self.state.put(record, status="skipped", reason=f"not selected by the series rules: {reasons}")
                return
            runner.run()
        except (KeyboardInterrupt, SystemExit):
            raise  # the record stays "segmenting": redone at the next start
        except Exception as e:  # this series failed; the node goes on with the next
            logger.debug("series %s failed", record.series_uid, exc_info=True)
            self.state.put(record, status="failed", reason=f"{type(e).__name__}: {e}" if not str(e) else str(e))
        else:
            self.state.put(record, status="segmented")

    def send_pending(self) -> None:
        """Send the results of the series segmented but not sent (after a restart, or a failed send) whose next try
        is due, each with one log line; the model does not run again. The waits between tries grow from
        :data:`FIRST_RETRY_S` to :data:`MAX_RETRY_S`."""
        now = time.monotonic()
        for series_uid, (due, _) in list(self._pending.items()):
            record = self.state.get(series_uid) if due <= now else None
            if record is None or record.status not in ("segmented", "not_sent"):
                continue
            self._send(record)
            logger.info("%s", _line(record, self._outcome(record), None))

    def _send(self, record: SeriesRecord) -> None:
        if self.target is None:
            self.state.put(record, status="written")
            return
        # the server's answer and the record that says so, or neither: a stop between them would send twice
        with interrupts_deferred():
            try:
                send_results(self.output_dir / record.output, self.target, only_unsent=record.status == "not_sent")
            except (PacsError, OSError, ValueError) as e:
                self.state.put(record, status="not_sent", reason=str(e))
                wait = self._pending.get(record.series_uid, (0.0, FIRST_RETRY_S))[1]
                self._pending[record.series_uid] = (time.monotonic() + wait, min(2 * wait, MAX_RETRY_S))
            else:
                self.state.put(record, status="sent", reason="", sent_to=self.target.root)
                self._pending.pop(record.series_uid, None)

    def _outcome(self, record: SeriesRecord) -> str:
        """What came of the series, for its log line: its inputs' statuses and volumes."""
        if record.status in ("skipped", "failed"):
            return f"{record.status}: {record.reason}"
        try:
            summary = read_summary(self.output_dir / record.output)
        except (OSError, ValueError):
            return record.status
        parts = [
            f"{item['input']} {item['status']}"
            + (f" {item['segmented_volume_ml']:.1f} ml" if item.get("segmented_volume_ml") is not None else "")
            for item in summary.get("inputs", [])
        ]
        sent = {
            "sent": f"sent to {record.sent_to}",
            "written": "written (no --send_to)",
            "not_sent": f"NOT sent: {record.reason}",
        }.get(record.status, record.status)
        return f"{', '.join(parts) or 'nothing written'}; {sent}"


def _line(record: SeriesRecord, outcome: str, seconds: float | None) -> str:
    took = f" in {seconds:.1f} s" if seconds is not None else ""
    outputs = "" if record.status == "skipped" else f" (outputs in {record.output})"
    return f"series {record.series_uid}: {record.instances} instances from {record.source}{took} -> {outcome}{outputs}"


@contextmanager
def signals_ignored() -> Iterator[None]:
    """Ctrl-C and SIGTERM ignored for the block (a node shutting down after the first one); on the main thread only,
    elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
