"""A DICOMweb study or series, retrieved into a private temporary folder for the time of a run.

The folder is made with :func:`tempfile.mkdtemp` (mode 0700: only this user reads the patient's images) and removed
when the ``with`` block ends, whatever ends it: success, an error, Ctrl-C, or SIGTERM in the bundle command (which
:func:`pipeline.errors.readable_errors` turns into ``KeyboardInterrupt``). Each series goes to a folder of its own and
each instance, as the server stores it, to ``<n>.dcm``; the runner then reads the folder as it reads an exported study.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.pacs.address import DicomWebAddress
from pipeline.pacs.dicomweb import DicomWebServer
from pipeline.pacs.errors import DicomWebError, PartialRetrievalError

if TYPE_CHECKING:
    from pipeline.io.dicom_series import SeriesRules

__all__ = ["Retrieved", "retrieve", "retrieved_study"]

logger = logging.getLogger("pipeline.pacs")


@dataclass
class Retrieved:
    """What was retrieved: series and instance counts, bytes and seconds."""

    series: int = 0
    instances: int = 0
    bytes: int = 0
    seconds: float = 0.0
    not_retrieved: list[dict[str, str]] = field(default_factory=list)

    def record(self) -> dict:
        """The summary's record of the retrieval (with the series the rules left out, and why)."""
        record = {"series": self.series, "instances": self.instances, "bytes": self.bytes, "seconds": self.seconds}
        return {**record, "not_retrieved": self.not_retrieved} if self.not_retrieved else record


def _retrieve_series(server: DicomWebServer, study_uid: str, series_uid: str, listed: int | None, folder: Path) -> int:
    """Write every instance of one series into ``folder``; the bytes written."""
    sop_uids = server.list_instances(study_uid, series_uid)
    expected = max(len(sop_uids), listed or 0)
    written = 0
    for n, sop_uid in enumerate(sop_uids):
        doing = f"retrieving instance {n + 1} of {len(sop_uids)} of series {series_uid}"
        try:
            dataset = server.retrieve_instance(study_uid, series_uid, sop_uid, doing)
        except DicomWebError as e:
            if e.status == 404:  # listed, then gone: the series changed on the server while it was read
                raise PartialRetrievalError(
                    f"partial retrieval of series {series_uid}: {n} of {expected} instances retrieved, then "
                    f"{server.root} answered HTTP 404 for an instance it had listed; nothing was segmented: run the "
                    "command again when the series is complete on the server",
                    404,
                ) from None
            raise
        path = folder / f"{n + 1:05d}.dcm"
        dataset.save_as(path, enforce_file_format=True)
        written += path.stat().st_size
    if len(sop_uids) < expected:
        raise PartialRetrievalError(
            f"partial retrieval of series {series_uid}: the server lists {expected} instances but returned "
            f"{len(sop_uids)}; nothing was segmented: run the command again when the series is complete on the server"
        )
    return written


def retrieve(
    server: DicomWebServer, address: DicomWebAddress, folder: Path, rules: SeriesRules | None = None
) -> Retrieved:
    """Retrieve every instance of the study (or series) ``address`` names into ``folder``, one subfolder per series.

    Args:
        server: the server.
        address: the study or series.
        folder: where the files go.
        rules: the series rules: a series whose listed Modality or SeriesDescription they reject is not retrieved
            (:meth:`~pipeline.io.dicom_series.SeriesRules.listing_rejection`); ``None`` retrieves every series.

    Raises:
        DicomWebError: the study or series is unknown, the server refused or did not answer.
        PartialRetrievalError: an instance the server listed could not be retrieved.
    """
    tick = time.perf_counter()
    retrieved = Retrieved()
    for k, series in enumerate(server.list_series(address.study_uid, address.series_uid)):
        reason = rules.listing_rejection(series.modality, series.description) if rules is not None else None
        if reason is not None:
            retrieved.not_retrieved.append({"series_instance_uid": series.uid, "reason": reason})
            logger.info("series %s not retrieved: %s", series.uid, reason)
            continue
        series_folder = folder / f"series_{k + 1:03d}"
        series_folder.mkdir()
        retrieved.bytes += _retrieve_series(server, address.study_uid, series.uid, series.num_instances, series_folder)
        count = sum(1 for _ in series_folder.iterdir())
        retrieved.series += 1
        retrieved.instances += count
        logger.info("retrieved series %s: %d instances from %s", series.uid, count, server.root)
    retrieved.seconds = round(time.perf_counter() - tick, 3)
    return retrieved


@contextmanager
def retrieved_study(
    server: DicomWebServer, address: DicomWebAddress, rules: SeriesRules | None = None
) -> Iterator[tuple[Path, Retrieved]]:
    """``with retrieved_study(server, address, rules) as (folder, retrieved):`` the study's files (of the series the
    rules do not reject from the listing) in a private temporary folder, removed when the block ends (also on an
    error or Ctrl-C)."""
    folder = Path(tempfile.mkdtemp(prefix="pipeline-dicomweb-"))  # mode 0700
    try:
        yield folder, retrieve(server, address, folder, rules)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
