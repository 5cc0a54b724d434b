"""Send a run's DICOM results to a PACS and record in ``summary.json`` what went where.

The destination is a DICOMweb root (STOW-RS, :class:`~pipeline.pacs.dicomweb.DicomWebServer`) or a DIMSE peer
``dicom://AE@host:port`` (C-STORE, :class:`~pipeline.pacs.dimse.DimseServer`): :func:`destination` makes either from
what ``--send_to`` says. Each written series (status ``ok`` or ``flagged``) is sent in one request (one association)
with every ``.dcm`` its ``report.json`` lists in ``outputs`` (``seg.dcm``, and ``sr.dcm`` where the run wrote one).
``summary.json`` gets a ``pacs`` record: the server (its URL, never credentials), the series sent with their files and
SOPInstanceUIDs, and the series not sent with the reason. Sending again (:func:`send_results` with ``only_unsent``,
or ``python -m pipeline.pacs send``) sends what that record lists as not sent, without running the model again.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from pipeline.atomic import write_json
from pipeline.pacs.address import parse_root
from pipeline.pacs.dicomweb import DEFAULT_RETRIES, DicomWebServer
from pipeline.pacs.dimse import DEFAULT_AE_TITLE, DimseServer, is_dimse_url
from pipeline.pacs.errors import PacsError, StoreRejectedError

__all__ = ["RECORD", "Destination", "SendError", "destination", "read_summary", "send_results", "series_results"]

logger = logging.getLogger("pipeline.pacs")

RECORD = "pacs"
"""The ``summary.json`` key of the record of what came from and went to a PACS."""
_WRITTEN = ("ok", "flagged")


class SendError(PacsError):
    """Some results were not sent; they stay in the output folder and ``summary.json`` lists them."""


class Destination(Protocol):
    """Where results are sent: :class:`~pipeline.pacs.dicomweb.DicomWebServer` or
    :class:`~pipeline.pacs.dimse.DimseServer`."""

    @property
    def root(self) -> str:
        """The server's address, as records and messages name it (never with credentials)."""

    def check_access(self, doing: str = ...) -> None:
        """One small request that fails when the server is down or refuses this node."""

    def store(self, paths: Sequence[Path], doing: str) -> list[str]:
        """Store the files; their SOPInstanceUIDs."""


def destination(
    send_to: str | None,
    ca_bundle: str | os.PathLike | None = None,
    retries: int = DEFAULT_RETRIES,
    ae_title: str = DEFAULT_AE_TITLE,
) -> Destination | None:
    """The destination ``--send_to`` names: ``dicom://AE@host:port`` (C-STORE), else a DICOMweb root (STOW-RS);
    ``None`` for none. Nothing is sent or asked yet (the commands call its ``check_access`` before they start).

    Args:
        send_to: the address as typed; ``None`` or empty for none.
        ca_bundle: a PEM file of certificate authorities for a DICOMweb server on https (a private CA).
        retries: retries of a transient DICOMweb failure.
        ae_title: this node's calling AE title for a DIMSE peer.

    Raises:
        ValueError: neither a DIMSE address nor an http(s) URL, or one with credentials in it.
    """
    if send_to in (None, ""):
        return None
    if is_dimse_url(send_to):
        return DimseServer(send_to, ae_title=ae_title)
    return DicomWebServer(parse_root(str(send_to)), ca_bundle=ca_bundle, retries=retries)


def read_summary(output_dir: Path) -> dict[str, Any]:
    """``<output_dir>/summary.json``.

    Raises:
        FileNotFoundError: there is none (no run wrote to this folder).
    """
    path = Path(output_dir) / "summary.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: pass the --output_dir of a finished inference run")
    return json.loads(path.read_text())


def series_results(output_dir: Path, summary: Mapping[str, Any]) -> dict[str, list[Path]]:
    """The DICOM files of each written series, by the series' input label, in the summary's order."""
    results: dict[str, list[Path]] = {}
    for record in summary.get("inputs", []):
        if record.get("kind") != "dicom series" or record.get("status") not in _WRITTEN:
            continue
        for report_path in sorted(Path(output_dir).glob(f"*/{record['input']}/report.json")):
            report = json.loads(report_path.read_text())
            if report.get("series_instance_uid") != record.get("series_instance_uid"):
                continue
            names = [n for n in report.get("outputs", []) if str(n).endswith(".dcm")]
            files = [report_path.parent / n for n in names if (report_path.parent / n).is_file()]
            if files:
                results[record["input"]] = files
    return results


def send_results(
    output_dir: str | Path, server: Destination, only_unsent: bool = False, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Send the run's DICOM results to ``server`` and record it in ``summary.json``.

    Args:
        output_dir: the run's output folder.
        server: where to send.
        only_unsent: send only the series the summary's record lists as not sent (sending again); default every
            written series.
        extra: more entries for the record (e.g. the ``input`` URL and what was retrieved).

    Returns:
        The record written to ``summary.json`` under :data:`RECORD`.

    Raises:
        SendError: some series were not sent (after recording which and why).
    """
    output_dir = Path(output_dir)
    summary = read_summary(output_dir)
    previous = summary.get(RECORD) or {}
    results = series_results(output_dir, summary)
    if only_unsent and previous:
        unsent = {entry["input"] for entry in previous.get("not_sent", [])}
        results = {label: files for label, files in results.items() if label in unsent}
    record = {
        **{k: v for k, v in previous.items() if k not in ("send_to", "sent", "not_sent", "send_s")},
        **(extra or {}),
        "send_to": server.root,
        "sent": list(previous.get("sent", [])) if only_unsent else [],
        "not_sent": [],
    }
    tick = time.perf_counter()
    stop: PacsError | None = None
    for label, files in results.items():
        names = [f.relative_to(output_dir).as_posix() for f in files]
        if stop is None:
            try:
                uids = server.store(files, f"storing {', '.join(f.name for f in files)} of {label}")
                record["sent"].append({"input": label, "files": names, "sop_instance_uids": uids})
                logger.info("%s: sent %s to %s", label, ", ".join(f.name for f in files), server.root)
                continue
            except StoreRejectedError as e:  # this series' files: the next series may be accepted
                record["not_sent"].append({"input": label, "files": names, "reason": str(e)})
                logger.error("%s: not sent: %s", label, e)
                continue
            except PacsError as e:  # the server, not the files: the others would fail alike
                stop = e
        record["not_sent"].append({"input": label, "files": names, "reason": str(stop)})
    record["send_s"] = round(time.perf_counter() - tick, 3)
    summary[RECORD] = record
    write_json(summary, output_dir / "summary.json")
    if record["not_sent"]:
        first = record["not_sent"][0]["reason"]
        raise SendError(
            f"{len(record['not_sent'])} of {len(results)} series not sent ({first}); the results stay in "
            f"{output_dir} and summary.json lists them: send them with "
            f"python -m pipeline.pacs send --output_dir {output_dir} --send_to {server.root}"
        )
    return record
