"""A DICOMweb server, through dicomweb-client: query (QIDO-RS), retrieve (WADO-RS) and store (STOW-RS).

One :class:`DicomWebServer` per server root holds one ``requests`` session: credentials from
:mod:`pipeline.pacs.credentials`, TLS certificates verified (against ``ca_bundle`` when given), and transient failures
(connection refused or reset, a timeout, HTTP 408, 429, 500, 502, 503, 504) retried ``retries`` times with exponential
backoff by urllib3's ``Retry``, for every request including STOW's POST (storing an instance twice stores it once).
dicomweb-client's own retrying is switched off, so that there is one policy. Every failure ends in a
:class:`~pipeline.pacs.errors.DicomWebError` whose message is one line (:func:`~pipeline.pacs.errors.explain`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pydicom
import requests
from dicomweb_client.api import DICOMwebClient
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from pipeline.pacs.address import parse_root
from pipeline.pacs.credentials import find_credentials
from pipeline.pacs.errors import DicomWebError, StoreRejectedError, explain

__all__ = ["DEFAULT_RETRIES", "DicomWebServer", "RemoteSeries"]

DEFAULT_RETRIES = 3
"""Retries of a request that failed in a way that may pass (each after a longer wait: 0, 1, 2 s, ...)."""
TRANSIENT_STATUSES = (408, 429, 500, 502, 503, 504)
"""HTTP statuses retried: the server is busy or failed, not the request."""
_NUMBER_OF_INSTANCES = "00201209"  # NumberOfSeriesRelatedInstances
_STUDY_UID = "0020000D"
_SERIES_UID = "0020000E"
_MODALITY = "00080060"
_SERIES_DESCRIPTION = "0008103E"
_SOP_UID = "00080018"
_LISTED = (_MODALITY, _SERIES_DESCRIPTION)  # None when the answer leaves them out, "" when empty
_SERIES_FIELDS = ["StudyInstanceUID", "Modality", "SeriesDescription", "NumberOfSeriesRelatedInstances"]
_ORIGINAL_TRANSFER_SYNTAX = (("application/dicom", "*"),)  # the files as stored, not transcoded


@dataclass(frozen=True)
class RemoteSeries:
    """A series as the server's QIDO answer lists it.

    Args:
        uid: SeriesInstanceUID.
        num_instances: NumberOfSeriesRelatedInstances, or ``None`` when the server does not say.
        study_uid: StudyInstanceUID.
        modality: Modality, or ``None`` when the server does not say.
        description: SeriesDescription, or ``None`` when the server does not say.
    """

    uid: str
    num_instances: int | None
    study_uid: str = ""
    modality: str | None = None
    description: str | None = None

    @classmethod
    def from_qido(cls, attributes: dict, study_uid: str = "") -> RemoteSeries:
        """The series a QIDO-RS answer's item describes (DICOM JSON)."""
        count = _value(attributes, _NUMBER_OF_INSTANCES)
        said = {tag: str(_value(attributes, tag) or "") if tag in attributes else None for tag in _LISTED}
        return cls(
            str(_value(attributes, _SERIES_UID)),
            int(count) if count is not None else None,
            str(_value(attributes, _STUDY_UID) or study_uid),
            said[_MODALITY],
            said[_SERIES_DESCRIPTION],
        )


def _value(attributes: dict, tag: str) -> object:
    values = attributes.get(tag, {}).get("Value") or [None]
    return values[0]


class DicomWebServer:
    """One DICOMweb server.

    Args:
        root: the server's DICOMweb root, e.g. ``https://pacs.example.org/dicom-web``.
        ca_bundle: a PEM file of the certificate authorities to trust for https (a private CA); default the system's.
        retries: retries of a transient failure (see the module docstring). Defaults to :data:`DEFAULT_RETRIES`.
        backoff_s: the backoff factor: waits of 0, 2 x, 4 x ... ``backoff_s`` seconds between retries.
        timeout_s: seconds to wait for a connection, and then for each answer.

    Raises:
        ValueError: ``root`` is not an http(s) URL or has credentials in it; ``ca_bundle`` is not a file;
            ``retries`` is negative.
    """

    def __init__(
        self,
        root: str,
        ca_bundle: str | os.PathLike | None = None,
        retries: int = DEFAULT_RETRIES,
        backoff_s: float = 0.5,
        timeout_s: float = 60.0,
    ) -> None:
        self.root = parse_root(root)
        if int(retries) < 0:
            raise ValueError(f"--dicomweb_retries must be 0 or more, got {retries}")
        self.retries = int(retries)
        self.credentials = find_credentials(self.root)
        session = requests.Session()
        session.auth = self.credentials.auth
        if ca_bundle not in (None, ""):
            if not Path(ca_bundle).is_file():
                raise ValueError(f"--ca_bundle {ca_bundle} is not a file: pass a PEM file of your CA's certificates")
            session.verify = str(ca_bundle)
        retry = Retry(
            total=self.retries,
            connect=self.retries,
            read=self.retries,
            status=self.retries,
            other=0,
            backoff_factor=backoff_s,
            status_forcelist=TRANSIENT_STATUSES,
            allowed_methods=None,
            raise_on_status=False,
        )
        adapter = HTTPAdapter(max_retries=retry)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        self.session = session
        """The ``requests`` session every request goes through (its hooks see each response)."""
        # a body larger than chunk_size is streamed from a generator, which a retry cannot send again
        self.client = DICOMwebClient(self.root, session=session, timeout=timeout_s, chunk_size=2**40)
        self.client.set_http_retry_params(retry=False)

    def __repr__(self) -> str:
        return f"DicomWebServer({self.root!r}, {self.credentials!r})"

    def _fail(self, error: Exception, doing: str, not_found: str = "") -> DicomWebError:
        return explain(error, self.root, doing, self.credentials.source, self.retries, not_found)

    def check_access(self, doing: str = "checking access") -> None:
        """One small query (``GET <root>/studies?limit=1``), to find a wrong password or a server that is down
        before any work is done.

        Raises:
            DicomWebError: the server did not answer, or refused.
        """
        try:
            self.client.search_for_studies(limit=1)
        except Exception as e:
            raise self._fail(e, doing) from None

    def list_series(self, study_uid: str, series_uid: str | None = None) -> list[RemoteSeries]:
        """The series of a study (or the one series ``series_uid``), from QIDO-RS.

        Raises:
            DicomWebError: with status 404 also when the server knows no such study or series.
        """
        what = f"study {study_uid}" if series_uid is None else f"series {series_uid} of study {study_uid}"
        not_found = f"the server has no {what}: check the UIDs in --input"
        filters = {"SeriesInstanceUID": series_uid} if series_uid else None
        try:
            found = self.client.search_for_series(
                study_uid, fields=_SERIES_FIELDS, search_filters=filters, get_remaining=True
            )
        except Exception as e:
            raise self._fail(e, f"querying {what}", not_found) from None
        series = [RemoteSeries.from_qido(s, study_uid) for s in found or []]
        series = [s for s in series if series_uid is None or s.uid == series_uid]
        if not series:
            raise DicomWebError(f"{self.root} answered no series while querying {what}: {not_found}", 404)
        return series

    def find_series(self, since: str | None = None) -> list[RemoteSeries]:
        """Every series on the server, or of the studies dated ``since`` or later, from QIDO-RS (``GET
        <root>/series``).

        Args:
            since: a StudyDate ``YYYYMMDD``; ``None`` for every study.

        Raises:
            DicomWebError: the server did not answer, or refused.
        """
        filters = {"StudyDate": f"{since}-"} if since else None
        try:
            found = self.client.search_for_series(fields=_SERIES_FIELDS, search_filters=filters, get_remaining=True)
        except Exception as e:
            raise self._fail(e, "listing the series") from None
        return [RemoteSeries.from_qido(s) for s in found or []]

    def list_instances(self, study_uid: str, series_uid: str, missing_ok: bool = False) -> list[str]:
        """The SOPInstanceUIDs of a series, from QIDO-RS; with ``missing_ok``, none for a series the server does not
        know (404) instead of an error."""
        try:
            found = self.client.search_for_instances(study_uid, series_uid, get_remaining=True)
        except Exception as e:
            if missing_ok and getattr(getattr(e, "response", None), "status_code", None) == 404:
                return []
            raise self._fail(e, f"querying the instances of series {series_uid}") from None
        return [str(_value(i, _SOP_UID)) for i in found or []]

    def retrieve_instance(self, study_uid: str, series_uid: str, sop_uid: str, doing: str) -> pydicom.Dataset:
        """One instance as stored (its own transfer syntax), from WADO-RS.

        Raises:
            DicomWebError: the request failed (``doing`` says what it was for).
        """
        try:
            return self.client.retrieve_instance(study_uid, series_uid, sop_uid, media_types=_ORIGINAL_TRANSFER_SYNTAX)
        except Exception as e:
            raise self._fail(e, doing) from None

    def store(self, paths: Sequence[Path], doing: str) -> list[str]:
        """Store DICOM files in one STOW-RS request, then ask (QIDO-RS) whether the server lists them.

        The second step is there because a server may answer success for an instance that it then drops (Orthanc
        does so for an instance its ``ReceivedInstanceFilter`` refuses).

        Returns:
            The SOPInstanceUIDs stored.

        Raises:
            StoreRejectedError: the server answered, but did not store every file (its reasons in the message).
            DicomWebError: the request failed.
        """
        datasets = [pydicom.dcmread(path) for path in paths]
        try:
            answer = self.client.store_instances(datasets)
        except Exception as e:
            error = self._fail(e, doing)
            if error.status is not None and error.status < 500 and error.status not in (401, 403):
                raise StoreRejectedError(str(error), error.status) from None
            raise error from None
        failed = list(getattr(answer, "FailedSOPSequence", []))
        wanted = {str(ds.SOPInstanceUID) for ds in datasets}
        if failed:
            reasons = ", ".join(f"0x{int(getattr(item, 'FailureReason', 0)):04X}" for item in failed)
            raise StoreRejectedError(
                f"{self.root} refused {len(failed)} of {len(wanted)} instances while {doing} (failure reasons "
                f"{reasons}): see the server's log for why, then send again"
            )
        listed = set()
        for study_uid, series_uid in {(str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)) for ds in datasets}:
            listed |= set(self.list_instances(study_uid, series_uid, missing_ok=True))
        if not wanted <= listed:
            raise StoreRejectedError(
                f"{self.root} answered success while {doing} but lists {len(wanted & listed)} of {len(wanted)} of the "
                "instances afterwards (it dropped the others, e.g. by a filter): see the server's log, then send again"
            )
        return sorted(wanted)
