"""A PACS node's memory: one small JSON file per series it has taken on, in a folder that outlives the process.

The watcher (:mod:`pipeline.pacs.watch`) and the listener (:mod:`pipeline.pacs.listen`) write a series' record before
each step and after it (:class:`SeriesRecord`, written whole or not at all by :func:`~pipeline.atomic.write_json`),
so that after a restart or a crash the node knows, for every series, what is done:

==============  =====================================================================================================
``segmenting``  the model ran when the node stopped: segmented again at the next start (nothing of it was sent)
``segmented``   the results are written and not yet sent: sent at the next start, without running the model again
``not_sent``    sending failed (``reason``): tried again after growing waits, without running the model again
``sent``        done: the results are in ``sent_to``
``written``     done: the results are written, and the node sends nowhere
``skipped``     done: nothing in the series to segment (``reason``: what the series rules said)
``failed``      done: the series could not be segmented (``reason``); its outputs say more
==============  =====================================================================================================

A series with a record is never segmented again (a ``segmenting`` one is redone, at most twice), and its results are
sent only while its record says they were not; the server's answer and the record that says so are written with
Ctrl-C and SIGTERM held, so that only a crash between them (a kill, a power cut) sends the same instances again, which
a PACS stores once. One node at a time may use a state folder: a lock (``node.lock``) refuses a second one.
The folder holds no patient data, only UIDs, statuses and folder names; it is made readable by its owner only.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from pipeline.atomic import write_json

__all__ = ["DONE", "NodeState", "SeriesRecord", "record_name"]

DONE = ("sent", "written", "skipped", "failed")
"""The statuses after which nothing more is done with a series."""
_STATUSES = ("segmenting", "segmented", "not_sent", *DONE)
_SAFE_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


@dataclass
class SeriesRecord:
    """What the node did with one series.

    Attributes:
        series_uid: SeriesInstanceUID.
        study_uid: StudyInstanceUID.
        status: one of the statuses in the module docstring.
        source: where the series came from (a DICOMweb root, or ``dicom://<calling AE>``), never credentials.
        output: the series' output folder, relative to the node's output folder.
        instances: how many instances were received.
        reason: why it was skipped, failed or not sent.
        sent_to: where its results went.
        attempts: how many times segmenting it was started.
        updated: when the record was last written (ISO 8601, UTC).
    """

    series_uid: str
    study_uid: str
    status: str = "segmenting"
    source: str = ""
    output: str = ""
    instances: int = 0
    reason: str = ""
    sent_to: str = ""
    attempts: int = 0
    updated: str = field(default="")

    @property
    def done(self) -> bool:
        """Whether nothing more is to be done with the series."""
        return self.status in DONE


def record_name(series_uid: str) -> str:
    """The record's file name: the UID itself when it is a well-formed UID, else a hash of it."""
    if _SAFE_UID.match(series_uid) and len(series_uid) <= 64:
        return f"{series_uid}.json"
    return f"{hashlib.sha256(series_uid.encode()).hexdigest()[:40]}.json"


class NodeState:
    """The records of a node's series in ``folder`` (created, mode 0700), locked for this node while it is open.

    Use as a context manager: ``with NodeState(folder) as state:``.

    Args:
        folder: the state folder.

    Raises:
        RuntimeError: when entered while another node holds the folder.
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self._records = self.folder / "series"
        self._lock: IO[str] | None = None

    def __enter__(self) -> NodeState:
        self._records.mkdir(parents=True, exist_ok=True)
        os.chmod(self.folder, 0o700)
        lock = (self.folder / "node.lock").open("w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise RuntimeError(
                f"another node uses the state folder {self.folder}: stop it, or give this one another --state_dir"
            ) from None
        self._lock = lock
        return self

    def __exit__(self, *exc: object) -> None:
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    def get(self, series_uid: str) -> SeriesRecord | None:
        """The series' record, or ``None`` when the node has not taken it on."""
        path = self._records / record_name(series_uid)
        return _read(path) if path.is_file() else None

    def put(self, record: SeriesRecord, **changes: Any) -> SeriesRecord:
        """Change ``record`` (``status=...``, ``reason=...``), stamp it and write it whole.

        Raises:
            ValueError: an unknown status.
        """
        for name, value in changes.items():
            setattr(record, name, value)
        if record.status not in _STATUSES:
            raise ValueError(f"unknown series status {record.status!r}: one of {', '.join(_STATUSES)}")
        record.updated = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        write_json(asdict(record), self._records / record_name(record.series_uid))
        return record

    def records(self) -> Iterator[SeriesRecord]:
        """Every record, oldest file name first; a record being written (its hidden ``.tmp-*`` file, renamed into
        place when complete) is not one yet."""
        for path in sorted(self._records.glob("*.json")):
            if not path.name.startswith("."):
                yield _read(path)

    def with_status(self, *statuses: str) -> list[SeriesRecord]:
        """The records in any of ``statuses``."""
        return [record for record in self.records() if record.status in statuses]


def _read(path: Path) -> SeriesRecord:
    try:
        data = json.loads(path.read_text())
        return SeriesRecord(**{k: v for k, v in data.items() if k in SeriesRecord.__dataclass_fields__})
    except (ValueError, TypeError) as e:
        raise ValueError(f"{path} is not a series record ({e}): move it away and the series is taken on again") from e
