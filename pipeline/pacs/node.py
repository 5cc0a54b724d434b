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
import time
from pathlib import Path

from pipeline.inference.runner import InferenceError, InferenceRunner
from pipeline.pacs.errors import PacsError
from pipeline.pacs.send import Destination, read_summary, send_results
from pipeline.pacs.state import NodeState, SeriesRecord

__all__ = ["SeriesNode"]

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

    def taken(self, series_uid: str) -> bool:
        """Whether the series has been taken on (it is not segmented again)."""
        record = self.state.get(series_uid)
        return record is not None and record.status != "segmenting"

    def segment(self, folder: Path, study_uid: str, series_uid: str, source: str) -> SeriesRecord:
        """Segment the series whose files are in ``folder``, write its outputs, send them, and log one line.

        Args:
            folder: the series' files (only this series).
            study_uid: its StudyInstanceUID.
            series_uid: its SeriesInstanceUID.
            source: where it came from, for the record and the log line.

        Returns:
            The series' record, done or ``not_sent``.
        """
        tick = time.perf_counter()
        instances = sum(1 for p in Path(folder).rglob("*") if p.is_file())
        record = self.state.put(
            SeriesRecord(series_uid, study_uid, source=source, output=series_uid, instances=instances),
            status="segmenting",
        )
        runner = self.runner.retargeted(folder, self.output_dir / record.output)
        found = runner.inputs()
        if not len(found):
            reasons = "; ".join(reason for _, reason in found.rejected) or "no DICOM image in it"
            self.state.put(record, status="skipped", reason=f"not selected by the series rules: {reasons}")
        else:
            try:
                runner.run()
            except InferenceError as e:
                self.state.put(record, status="failed", reason=str(e))
            except (ValueError, OSError) as e:  # refused before the model ran (e.g. the output folder)
                self.state.put(record, status="failed", reason=str(e))
            else:
                self.state.put(record, status="segmented")
        if record.status == "segmented":
            self._send(record)
        logger.info("%s", _line(record, self._outcome(record), time.perf_counter() - tick))
        return record

    def send_pending(self) -> None:
        """Send the results of every series segmented but not sent (after a restart, or a failed send), each with
        one log line; the model does not run again."""
        for record in self.state.with_status("segmented", "not_sent"):
            self._send(record)
            logger.info("%s", _line(record, self._outcome(record), None))

    def _send(self, record: SeriesRecord) -> None:
        if self.target is None:
            self.state.put(record, status="written")
            return
        try:
            send_results(self.output_dir / record.output, self.target, only_unsent=record.status == "not_sent")
        except (PacsError, OSError, ValueError) as e:
            self.state.put(record, status="not_sent", reason=str(e))
        else:
            self.state.put(record, status="sent", reason="", sent_to=self.target.root)

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
