"""A DIMSE peer (a PACS or a modality) through pynetdicom: C-ECHO to check it, C-STORE to send it results.

The peer is written ``dicom://<AE title>@<host>:<port>`` wherever a DICOMweb root is accepted as a destination
(``--send_to``). :class:`DimseServer` has the destination interface of :class:`~pipeline.pacs.dicomweb.DicomWebServer`
(``root``, :meth:`~DimseServer.check_access`, :meth:`~DimseServer.store`), so that sending and its record
(:mod:`pipeline.pacs.send`) are the same for both. Every failure ends in a one-line
:class:`~pipeline.pacs.errors.DimseError` (the peer did not answer, or refused the association) or
:class:`~pipeline.pacs.errors.StoreRejectedError` (it answered a C-STORE with a failure status).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from pipeline.pacs.errors import DimseError, StoreRejectedError

__all__ = ["DEFAULT_AE_TITLE", "DimseAddress", "DimseServer", "is_dimse_url", "parse_dimse_url"]

DEFAULT_AE_TITLE = "PIPELINE"
"""This node's AE title: the calling AE title of what it sends, and the listener's own."""

_URL = re.compile(
    r"^(?i:dicom)://(?P<aet>[^@/\\]{1,16})@(?P<host>\[[0-9a-fA-F:]+\]|[^:/@\[\]]+):(?P<port>[0-9]{1,5})/?$"
)
_WARNING_STATUSES = (0x0001, 0xB000, 0xB006, 0xB007)  # stored, with a warning (coerced or discarded elements)
_CONTEXTS_PER_ASSOCIATION = 128  # the most presentation contexts one association may propose


def check_ae_title(title: str, what: str) -> str:
    """``title`` stripped, when it is a valid AE title: 1 to 16 characters, no backslash or control character.

    Raises:
        ValueError: it is not one (the message says what a valid one is).
    """
    stripped = str(title).strip()
    if not 1 <= len(stripped) <= 16 or "\\" in stripped or not stripped.isprintable():
        raise ValueError(f"{what} {title!r} is not a DICOM AE title: 1 to 16 characters, no backslash")
    return stripped


@dataclass(frozen=True)
class DimseAddress:
    """A DIMSE peer: its AE title, host and port."""

    ae_title: str
    host: str
    port: int

    @property
    def url(self) -> str:
        """``dicom://AE@host:port``."""
        return f"dicom://{self.ae_title}@{self.host}:{self.port}"

    def __str__(self) -> str:
        return self.url


def is_dimse_url(value: object) -> bool:
    """Whether ``value`` is a ``dicom://`` address."""
    return isinstance(value, str) and value.strip().lower().startswith("dicom://")


def parse_dimse_url(url: str, what: str = "--send_to") -> DimseAddress:
    """The peer a ``dicom://AE@host:port`` address names.

    Raises:
        ValueError: not such an address (the message shows the form), or an AE title or port that cannot be.
    """
    match = _URL.match(url.strip())
    if match is None:
        raise ValueError(f"{what} {url!r} is not a DIMSE address: expected dicom://<AE title>@<host>:<port>")
    port = int(match["port"])
    if not 0 < port < 65536:
        raise ValueError(f"{what} {url!r}: port {port} is not in 1..65535")
    return DimseAddress(check_ae_title(match["aet"], what), match["host"].strip("[]"), port)


class DimseServer:
    """A DIMSE peer that results are sent to.

    Args:
        address: ``dicom://AE@host:port``, or the parsed :class:`DimseAddress`.
        ae_title: this node's (calling) AE title. Defaults to :data:`DEFAULT_AE_TITLE`.
        timeout_s: seconds to wait for the association, and then for each answer.

    Raises:
        ValueError: a malformed address or AE title.
    """

    def __init__(self, address: str | DimseAddress, ae_title: str = DEFAULT_AE_TITLE, timeout_s: float = 60.0) -> None:
        self.address = address if isinstance(address, DimseAddress) else parse_dimse_url(address)
        self.ae_title = check_ae_title(ae_title, "the calling AE title")
        self.timeout_s = float(timeout_s)

    @property
    def root(self) -> str:
        """The peer as ``dicom://AE@host:port``: how records and messages name it."""
        return self.address.url

    def __repr__(self) -> str:
        return f"DimseServer({self.root!r}, ae_title={self.ae_title!r})"

    def _associate(self, contexts: Sequence[tuple[str, Sequence[str]]], doing: str):  # -> pynetdicom Association
        from pynetdicom import AE

        ae = AE(ae_title=self.ae_title)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self.timeout_s
        for sop_class, syntaxes in contexts:
            ae.add_requested_context(sop_class, list(syntaxes))
        association = ae.associate(self.address.host, self.address.port, ae_title=self.address.ae_title)
        if association.is_established:
            return association
        if association.is_rejected:
            raise DimseError(
                f"{self.root} rejected the association while {doing} (calling AE title {self.ae_title}): check that "
                f"it knows {self.ae_title} as a peer and that its AE title is {self.address.ae_title}"
            )
        raise DimseError(
            f"{self.root} did not answer while {doing} (no association: connection refused, aborted or timed out): "
            "check that it runs and the host, port and AE title are right, then try again"
        )

    def check_access(self, doing: str = "checking access") -> None:
        """A C-ECHO, to find a peer that is down or refuses this node before any work is done.

        Raises:
            DimseError: no association, or the echo failed.
        """
        from pynetdicom.sop_class import Verification

        association = self._associate([(Verification, [ImplicitVRLittleEndian])], doing)
        try:
            status = association.send_c_echo()
        finally:
            association.release()
        code = getattr(status, "Status", None)
        if code != 0x0000:
            raise DimseError(f"{self.root} answered C-ECHO with {_status(code)} while {doing}", code)

    def store(self, paths: Sequence[Path], doing: str) -> list[str]:
        """Send DICOM files with C-STORE over one association.

        Returns:
            The SOPInstanceUIDs stored.

        Raises:
            StoreRejectedError: the peer answered a C-STORE with a failure status, or accepted no presentation
                context for a file (its SOP class or transfer syntax).
            DimseError: no association, or it broke off.
        """
        datasets = [pydicom.dcmread(path) for path in paths]
        wanted: dict[str, set[str]] = {}
        for ds in datasets:
            syntax = str(ds.file_meta.TransferSyntaxUID)
            wanted.setdefault(str(ds.SOPClassUID), set()).update({syntax, ExplicitVRLittleEndian})
        if len(wanted) > _CONTEXTS_PER_ASSOCIATION:
            raise StoreRejectedError(f"{len(wanted)} SOP classes in one send; at most {_CONTEXTS_PER_ASSOCIATION}")
        association = self._associate([(sop, sorted(syntaxes)) for sop, syntaxes in wanted.items()], doing)
        stored: list[str] = []
        try:
            for path, ds in zip(paths, datasets, strict=True):
                try:
                    status = association.send_c_store(ds)
                except ValueError as e:  # pynetdicom: no accepted presentation context for it
                    raise StoreRejectedError(
                        f"{self.root} accepted no presentation context for {Path(path).name} while {doing} ({e}): "
                        "check that it stores this SOP class"
                    ) from None
                code = getattr(status, "Status", None)
                if code is None:
                    raise DimseError(
                        f"{self.root} broke off the association while {doing} after {len(stored)} of "
                        f"{len(datasets)} files: check the peer's log, then send again"
                    )
                if code != 0x0000 and code not in _WARNING_STATUSES:
                    raise StoreRejectedError(
                        f"{self.root} answered C-STORE of {Path(path).name} with {_status(code)} while {doing}: see "
                        "the peer's log for why, then send again",
                        code,
                    )
                stored.append(str(ds.SOPInstanceUID))
        finally:
            if association.is_established:
                association.release()
        logging.getLogger("pipeline.pacs").debug("%s: %d files stored with C-STORE", self.root, len(stored))
        return sorted(stored)


def _status(code: int | None) -> str:
    """A DIMSE status as people quote it, e.g. ``status 0xA700 (Out of resources)``."""
    if code is None:
        return "no status"
    from pynetdicom.status import STORAGE_SERVICE_CLASS_STATUS

    meaning = STORAGE_SERVICE_CLASS_STATUS.get(code, ("", ""))[1]
    return f"status 0x{code:04X}" + (f" ({meaning})" if meaning else "")
