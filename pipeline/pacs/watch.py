"""Watch a DICOMweb server: segment each new series that the bundle's series rules select, once, and send it back.

``python -m monai.bundle run watch --config_file bundles/<name>/inference.json --input <DICOMweb root>
[--send_to <root or dicom://AE@host:port>]`` runs :class:`DicomWebWatcher`. Every ``poll_s`` seconds it lists the
server's series (QIDO-RS ``GET <root>/series``) of the studies dated ``watch_since`` or later (default ``today``: the
day the watcher first ran with its state folder, so that starting one on a PACS does not segment its archive, and at
most a week back), leaves
out the series the rules reject from the listing (Modality, SeriesDescription) and those the state folder knows, and
waits until a series' instance count has stayed the same for ``complete_after_s`` seconds (the PACS may still be
receiving it). Then it retrieves the series into a private temporary folder and hands it to
:class:`~pipeline.pacs.node.SeriesNode`, which segments it, writes the outputs, sends the results and records it, so
that a restart (or a crash) neither segments nor sends it again (:mod:`pipeline.pacs.state`). Ctrl-C or SIGTERM stops
it at once, except while results are being sent and recorded; the series it was segmenting is segmented again at the
next start.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

from pipeline.atomic import atomic_output
from pipeline.inference.runner import InferenceRunner
from pipeline.pacs.address import DicomWebAddress, parse_root
from pipeline.pacs.dicomweb import DEFAULT_RETRIES, DicomWebServer, RemoteSeries
from pipeline.pacs.dimse import DEFAULT_AE_TITLE
from pipeline.pacs.errors import PacsError
from pipeline.pacs.node import SeriesNode
from pipeline.pacs.retrieve import retrieved_study
from pipeline.pacs.send import destination
from pipeline.pacs.state import NodeState

__all__ = ["DicomWebWatcher"]

logger = logging.getLogger("pipeline.pacs")


TODAY = "today"
"""``watch_since`` for the day the watcher first ran with its state folder (then at most :data:`WINDOW_DAYS` back)."""
WINDOW_DAYS = 7
"""How many days back a ``today`` watcher keeps listing, so that each listing stays small on a PACS that runs for
years; a study that reaches the PACS later than that after its StudyDate is not seen."""


def check_study_date(value: str | None) -> str | None:
    """``watch_since`` as a DICOM date ``YYYYMMDD``, :data:`TODAY`, or ``None`` (every study).

    Raises:
        ValueError: none of these.
    """
    if value in (None, ""):
        return None
    text = str(value).strip()
    if text.lower() == TODAY:
        return TODAY
    try:
        time.strptime(text, "%Y%m%d")
    except ValueError:
        raise ValueError(f"--watch_since {value!r} is not a date YYYYMMDD (e.g. 20261204), today, or null") from None
    return text


def first_day(state: NodeState) -> str:
    """The day the watcher first ran with this state folder (``YYYYMMDD``, local time), written there then.

    Raises:
        ValueError: the folder's ``watch_since`` file is not such a date (the message says what to do).
    """
    path = state.folder / "watch_since"
    if not path.is_file():
        with atomic_output(path) as part:
            part.write_text(time.strftime("%Y%m%d") + "\n")
    day = path.read_text().strip()
    try:
        time.strptime(day, "%Y%m%d")
    except ValueError:
        raise ValueError(f"{path} holds {day!r}, not a date YYYYMMDD: write the first day to watch there") from None
    return day


def window_start(first: str, days: int = WINDOW_DAYS) -> str:
    """The StudyDate a ``today`` watcher lists from: its first day, or ``days`` days back once that is later."""
    back = time.strftime("%Y%m%d", time.localtime(time.time() - days * 86400))
    return max(first, back)


class DicomWebWatcher:
    """Poll a DICOMweb server and segment each new selected series once.

    Args:
        runner: the bundle's inference runner (model, series rules, writers).
        input: the DICOMweb root to watch.
        output_dir: where each series' outputs go (``<output_dir>/<SeriesInstanceUID>/``).
        state_dir: the node's state folder (:mod:`pipeline.pacs.state`).
        send_to: where results go: a DICOMweb root or ``dicom://AE@host:port``; ``None`` or empty to only write them.
        poll_s: seconds between two listings.
        complete_after_s: a series is taken once its instance count has not changed for this many seconds.
        since: a StudyDate ``YYYYMMDD``: only studies of that day or later are listed; :data:`TODAY` (the default)
            for the day the watcher first ran with ``state_dir``; ``None`` lists every series.
        ca_bundle: a PEM file of certificate authorities for https (a private CA).
        retries: retries of a transient DICOMweb failure per request.
        ae_title: this node's calling AE title for a DIMSE ``send_to``.

    Raises:
        ValueError: a malformed URL or date, or a negative time.
    """

    def __init__(
        self,
        runner: InferenceRunner,
        input: str,
        output_dir: str | os.PathLike,
        state_dir: str | os.PathLike,
        send_to: str | None = None,
        poll_s: float = 30.0,
        complete_after_s: float = 30.0,
        since: str | None = TODAY,
        ca_bundle: str | os.PathLike | None = None,
        retries: int = DEFAULT_RETRIES,
        ae_title: str = DEFAULT_AE_TITLE,
    ) -> None:
        if not input:
            raise ValueError("nothing to watch: pass --input <DICOMweb root>, e.g. https://pacs.example.org/dicom-web")
        self.root = parse_root(str(input), "--input")
        if float(poll_s) <= 0 or float(complete_after_s) < 0:
            raise ValueError(f"--poll_s must be above 0 and --complete_after_s 0 or more: {poll_s}, {complete_after_s}")
        self.runner = runner
        self.output_dir = Path(output_dir)
        self.state_dir = Path(state_dir)
        self.target = destination(send_to, ca_bundle, retries, ae_title)  # a malformed one refused here
        self.poll_s = float(poll_s)
        self.complete_after_s = float(complete_after_s)
        self.since = check_study_date(since)
        self.source = DicomWebServer(self.root, ca_bundle=ca_bundle, retries=int(retries))
        self.stop = threading.Event()
        """Set it to stop the watcher after its current step (Ctrl-C and SIGTERM stop it too)."""
        self._growing: dict[str, tuple[int | None, float]] = {}  # series seen: (instances, since when)

    def run(self) -> int:
        """Watch until stopped.

        Returns:
            How many series were taken on.

        Raises:
            PacsError: the server (or ``send_to``) did not answer or refused at the start.
            RuntimeError: another node uses the state folder.
        """
        source = self.source
        source.check_access("checking --input before watching")
        target = self.target
        if target is not None:
            target.check_access("checking --send_to before watching")
        taken = 0
        with NodeState(self.state_dir) as state:
            node = SeriesNode(self.runner, self.output_dir, state, target)
            first = first_day(state) if self.since == TODAY else None
            logger.info(
                "watching %s every %.3g s%s; results to %s; state in %s",
                self.root,
                self.poll_s,
                f" (studies dated since {window_start(first) if first else self.since})" if self.since else "",
                target.root if target is not None else "the output folder only",
                self.state_dir,
            )
            try:
                while not self.stop.is_set():
                    node.send_pending()
                    taken += self.poll(source, node, window_start(first) if first else self.since)
                    self.stop.wait(self.poll_s)
            except KeyboardInterrupt:
                logger.info("stopped (Ctrl-C or SIGTERM) after %d series; a series being segmented is redone", taken)
                return taken
        logger.info("stopped after %d series", taken)
        return taken

    def poll(self, source: DicomWebServer, node: SeriesNode, since: str | None) -> int:
        """List the server's series (of studies dated ``since`` or later) once and take on each new one that is
        complete; how many were taken."""
        try:
            listed = source.find_series(since)
        except PacsError as e:  # the server may be restarting: keep watching
            logger.warning("listing the series failed, trying again in %.3g s: %s", self.poll_s, e)
            return 0
        taken = 0
        now = time.monotonic()
        for series in listed:
            if self.stop.is_set():
                break
            if not self._ready(series, node, now):
                continue
            if self._take(source, node, series):
                taken += 1
        return taken

    def _ready(self, series: RemoteSeries, node: SeriesNode, now: float) -> bool:
        """Whether to take the series now: new, selected by the listing rules, and its count settled."""
        if series.uid in self._growing and self._growing[series.uid][0] == -1:
            return False  # rejected by the rules: logged once
        if node.taken(series.uid):
            return False
        reason = node.runner.series_rules.listing_rejection(series.modality, series.description)
        if reason is not None:
            logger.info("series %s not selected: %s", series.uid, reason)
            self._growing[series.uid] = (-1, now)
            return False
        count, first = self._growing.get(series.uid, (None, now))
        if series.uid not in self._growing or count != series.num_instances:
            self._growing[series.uid] = (series.num_instances, now)
            first = now
        return now - first >= self.complete_after_s

    def _take(self, source: DicomWebServer, node: SeriesNode, series: RemoteSeries) -> bool:
        address = DicomWebAddress(source.root, series.study_uid, series.uid)
        try:
            with retrieved_study(source, address) as (folder, _):
                node.segment(folder, series.study_uid, series.uid, source.root)
        except PacsError as e:  # a partial retrieval, or the server went away: tried again at a later poll
            logger.warning("series %s not taken yet: %s", series.uid, e)
            self._growing.pop(series.uid, None)
            return False
        self._growing.pop(series.uid, None)
        return True
