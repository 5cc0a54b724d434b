"""Listen for DICOM pushes: a C-STORE SCP (with C-ECHO) that segments each series once it is complete.

``python -m monai.bundle run listen --config_file bundles/<name>/inference.json --listen_port 11112
[--send_to <root or dicom://AE@host:port>]`` runs :class:`DimseListener`. A modality or PACS pushes instances to it
(C-STORE, any storage SOP class, in any transfer syntax, compressed ones included); each is written as it arrives to
``<state_dir>/incoming/<SeriesInstanceUID>/`` (mode 0700; nothing of a study is held in memory). A series is complete
when no instance of it has arrived for ``complete_after_s`` seconds; then :class:`~pipeline.pacs.node.SeriesNode`
segments it, writes and sends its results and records it, and its received files are removed. An instance that
arrives for a series already segmented is dropped with a logged warning (answered with success, so that the sender
does not push it again): a series is segmented once. Calling AE titles can be restricted (``calling_aets``); others
are refused when they associate. Ctrl-C or SIGTERM stops the server; received series not yet segmented stay in
``incoming/`` and are segmented at the next start.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.inference.runner import InferenceRunner
from pipeline.pacs.dicomweb import DEFAULT_RETRIES
from pipeline.pacs.dimse import DEFAULT_AE_TITLE, check_ae_title
from pipeline.pacs.node import SeriesNode, signals_ignored
from pipeline.pacs.send import destination
from pipeline.pacs.state import NodeState, record_name

__all__ = ["DimseListener"]

logger = logging.getLogger("pipeline.pacs")

_SUCCESS = 0x0000
_OUT_OF_RESOURCES = 0xA700
_CANNOT_UNDERSTAND = 0xC000


class DimseListener:
    """Receive pushed series and segment each once it is complete.

    Args:
        runner: the bundle's inference runner (model, series rules, writers).
        output_dir: where each series' outputs go (``<output_dir>/<SeriesInstanceUID>/``).
        state_dir: the node's state folder (:mod:`pipeline.pacs.state`); received files wait in its ``incoming/``.
        port: the TCP port to listen on.
        ae_title: this node's AE title (called by those who push, and calling where it sends).
        host: the address to listen on: ``0.0.0.0`` for every interface, ``127.0.0.1`` for this machine only.
        calling_aets: the AE titles allowed to associate; ``None`` or empty allows any.
        send_to: where results go: a DICOMweb root or ``dicom://AE@host:port``; ``None`` or empty to only write them.
        complete_after_s: a series is complete when none of its instances arrived for this many seconds.
        ca_bundle: a PEM file of certificate authorities for a DICOMweb ``send_to`` on https.
        retries: retries of a transient DICOMweb failure per request.

    Raises:
        ValueError: a malformed AE title, port or address.
    """

    def __init__(
        self,
        runner: InferenceRunner,
        output_dir: str | os.PathLike,
        state_dir: str | os.PathLike,
        port: int = 11112,
        ae_title: str = DEFAULT_AE_TITLE,
        host: str = "0.0.0.0",
        calling_aets: Sequence[str] | str | None = None,
        send_to: str | None = None,
        complete_after_s: float = 30.0,
        ca_bundle: str | os.PathLike | None = None,
        retries: int = DEFAULT_RETRIES,
    ) -> None:
        if not 0 < int(port) < 65536:
            raise ValueError(f"--listen_port {port} is not in 1..65535")
        if float(complete_after_s) < 0:
            raise ValueError(f"--complete_after_s must be 0 or more, got {complete_after_s}")
        self.runner = runner
        self.output_dir = Path(output_dir)
        self.state_dir = Path(state_dir)
        self.incoming = self.state_dir / "incoming"
        self.port = int(port)
        self.ae_title = check_ae_title(ae_title, "--ae_title")
        self.host = str(host)
        aets = [calling_aets] if isinstance(calling_aets, str) else list(calling_aets or [])
        self.calling_aets = [check_ae_title(aet, "--calling_aets") for aet in aets]
        self.target = destination(send_to, ca_bundle, retries, self.ae_title)  # a malformed one refused here
        self.complete_after_s = float(complete_after_s)
        self.stop = threading.Event()
        """Set it to stop the listener after its current step (Ctrl-C and SIGTERM stop it too)."""
        self.ready = threading.Event()
        """Set once the server accepts associations."""
        self._lock = threading.Lock()
        self._arrivals: dict[str, tuple[float, str, str]] = {}  # series: (last arrival, study UID, calling AE)
        self._node: SeriesNode | None = None
        self._segmenting: str | None = None  # the series being segmented: its late instances are dropped

    # ------------------------------------------------------------------------------------------------ receiving
    # An instance is written under a temporary name outside the lock, then, under the lock, either renamed into its
    # series' folder or dropped when the series has been taken. The main loop takes a series (removes it from the
    # arrivals and marks it as being segmented) under the same lock, so an instance lands either in the folder before
    # the series is taken, and is segmented with it, or after, and is dropped with a warning: never in a folder that
    # is being segmented or removed.

    def _on_store(self, event: Any) -> int:
        """C-STORE: write the instance into its series' folder (whole or not at all); the status to answer."""
        try:
            dataset = event.dataset
            series_uid, study_uid = str(dataset.SeriesInstanceUID), str(dataset.StudyInstanceUID)
            sop_uid = str(dataset.SOPInstanceUID)
        except Exception as e:  # no UIDs to file it under
            logger.warning("refused an instance from %s: %s", _calling(event), type(e).__name__)
            return _CANNOT_UNDERSTAND
        folder = self.incoming / _folder_name(series_uid)
        part = self.incoming / f".{uuid.uuid4().hex}.part"
        try:
            with part.open("wb") as f:
                f.write(event.encoded_dataset())
            with self._lock:
                if self._is_taken(series_uid):
                    part.unlink()
                    logger.warning(
                        "series %s: an instance arrived after the series was taken as complete (%.3g s without one); "
                        "dropped, as a series is segmented once: raise --complete_after_s if the sender pauses longer",
                        series_uid,
                        self.complete_after_s,
                    )
                    return _SUCCESS
                folder.mkdir(exist_ok=True)
                os.replace(part, folder / f"{_folder_name(sop_uid)}.dcm")
                self._arrivals[series_uid] = (time.monotonic(), study_uid, _calling(event))
        except OSError as e:
            part.unlink(missing_ok=True)
            logger.error("series %s: could not write a received instance (%s)", series_uid, e.strerror or e)
            return _OUT_OF_RESOURCES
        return _SUCCESS

    def _is_taken(self, series_uid: str) -> bool:
        """Whether the series is being segmented or was (call with the lock held)."""
        return series_uid == self._segmenting or (self._node is not None and self._node.taken(series_uid))

    def _take_complete(self) -> tuple[str, str, str] | None:
        """Take one series none of whose instances arrived for ``complete_after_s``: ``(UID, study UID, calling AE)``,
        now marked as being segmented; ``None`` when there is none."""
        now = time.monotonic()
        with self._lock:
            for uid, (last, study, aet) in self._arrivals.items():
                if now - last >= self.complete_after_s:
                    del self._arrivals[uid]
                    self._segmenting = uid
                    return uid, study, aet
        return None

    def _waiting_from_before(self) -> None:
        """Series received before a stop and not segmented: complete now (nothing more of them comes). Half-written
        instances of a stopped transfer are removed."""
        import pydicom

        for part in self.incoming.glob(".*.part"):
            part.unlink(missing_ok=True)
        for folder in sorted(p for p in self.incoming.iterdir() if p.is_dir()):
            files = sorted(folder.glob("*.dcm"))
            if not files:
                shutil.rmtree(folder, ignore_errors=True)
                continue
            header = pydicom.dcmread(files[0], stop_before_pixels=True)
            self._arrivals[str(header.SeriesInstanceUID)] = (-float("inf"), str(header.StudyInstanceUID), "")

    def _segment(self, node: SeriesNode, series_uid: str, study_uid: str, calling: str) -> None:
        """Segment a taken series from its folder, then remove the folder (its record says what came of it)."""
        folder = self.incoming / _folder_name(series_uid)
        try:
            if node.taken(series_uid):  # segmented before a crash that left its files
                logger.info("series %s: segmented before; its %d received files removed", series_uid, _count(folder))
            elif folder.is_dir():
                node.segment(folder, study_uid, series_uid, f"dicom://{calling or 'unknown'}")
            shutil.rmtree(folder, ignore_errors=True)
        finally:
            with self._lock:
                self._segmenting = None

    # ------------------------------------------------------------------------------------------------ running
    def _start_server(self):  # -> pynetdicom's ThreadedAssociationServer
        from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
        from pynetdicom.sop_class import Verification

        ae = AE(ae_title=self.ae_title)
        for context in AllStoragePresentationContexts:  # compressed pushes too: pydicom decodes them
            ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        ae.add_supported_context(Verification)
        ae.require_calling_aet = self.calling_aets
        try:
            return ae.start_server(
                (self.host, self.port), block=False, evt_handlers=[(evt.EVT_C_STORE, self._on_store)]
            )
        except OSError as e:
            raise OSError(
                f"cannot listen on {self.host}:{self.port} ({e.strerror or e}): another program may use the port; "
                "pass another --listen_port (or --listen_host)"
            ) from None

    def run(self) -> int:
        """Listen until stopped.

        Returns:
            How many series were taken on.

        Raises:
            PacsError: ``send_to`` did not answer or refused at the start.
            OSError: the port cannot be listened on.
            RuntimeError: another node uses the state folder.
        """
        target = self.target
        if target is not None:
            target.check_access("checking --send_to before listening")
        taken = 0
        with NodeState(self.state_dir) as state:
            self.incoming.mkdir(parents=True, exist_ok=True)
            os.chmod(self.incoming, 0o700)
            self._node = node = SeriesNode(self.runner, self.output_dir, state, target)
            self._waiting_from_before()
            server = self._start_server()
            self.ready.set()
            logger.info(
                "listening as %s on %s:%d%s; a series is complete after %.3g s without an instance; results to %s",
                self.ae_title,
                self.host,
                self.port,
                f" (calling AE titles {', '.join(self.calling_aets)})" if self.calling_aets else "",
                self.complete_after_s,
                target.root if target is not None else "the output folder only",
            )
            if not self.calling_aets and self.host not in ("127.0.0.1", "::1", "localhost"):
                logger.warning(
                    "any DICOM node that reaches %s:%d may push series to segment: restrict --calling_aets, and the "
                    "port with a firewall (an AE title is not a password)",
                    self.host,
                    self.port,
                )
            try:
                while not self.stop.is_set():
                    node.send_pending()
                    while not self.stop.is_set() and (complete := self._take_complete()) is not None:
                        self._segment(node, *complete)
                        taken += 1
                    self.stop.wait(min(1.0, max(self.complete_after_s / 4, 0.1)))
            except KeyboardInterrupt:
                logger.info("stopped (Ctrl-C or SIGTERM) after %d series; received series wait in incoming/", taken)
            finally:
                with signals_ignored():  # a second Ctrl-C does not cut the shutdown short
                    for association in server.active_associations:
                        association.abort()
                    server.shutdown()
                self._node = None
        return taken


def _count(folder: Path) -> int:
    return sum(1 for _ in folder.glob("*.dcm")) if folder.is_dir() else 0


def _calling(event: Any) -> str:
    """The calling AE title of an event's association."""
    try:
        return str(event.assoc.requestor.ae_title).strip()
    except AttributeError:
        return ""


def _folder_name(uid: str) -> str:
    """A UID as a file or folder name: itself when it is digits and dots, else a hash."""
    return record_name(uid).removesuffix(".json")
