"""The bundle's inference with a PACS at either end: ``--input <DICOMweb study URL>`` and ``--send_to <root>``.

:class:`DicomWebInference` wraps the :class:`~pipeline.inference.InferenceRunner` the config builds, so that the runner
stays a reader of folders: with a study or series URL as ``input``, it retrieves the instances into a private
temporary folder (:func:`~pipeline.pacs.retrieve.retrieved_study`), points the runner at it and runs it, which selects
the series, runs the model and writes the outputs and ``summary.json`` exactly as for a folder; with ``send_to``, it
then sends each written series' DICOM files (:func:`~pipeline.pacs.send.send_results`) to a DICOMweb root or a DIMSE
peer ``dicom://AE@host:port``. The send server is asked one
small query before the model runs, so that a wrong password or a server that is down costs no model time and sends
nothing.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from pipeline.atomic import write_json
from pipeline.inference.runner import InferenceError, InferenceRunner
from pipeline.pacs.address import is_dicomweb_url, parse_study_url
from pipeline.pacs.dicomweb import DEFAULT_RETRIES, DicomWebServer
from pipeline.pacs.dimse import DEFAULT_AE_TITLE, check_ae_title
from pipeline.pacs.retrieve import retrieved_study
from pipeline.pacs.send import RECORD, Destination, destination, read_summary, send_results

__all__ = ["DicomWebInference"]

logger = logging.getLogger("pipeline.pacs")


class DicomWebInference:
    """Run ``runner`` on a folder or a DICOMweb study, and send the results to a DICOMweb server when asked.

    Args:
        runner: the inference runner (its ``input`` is replaced by the retrieved folder for the run).
        input: what ``--input`` says: a path (the runner reads it as it is) or a DICOMweb study or series URL.
        send_to: where to store the results: a DICOMweb root (STOW-RS) or ``dicom://AE@host:port`` (C-STORE), or
            ``None``/empty for nowhere.
        ca_bundle: a PEM file of certificate authorities to trust for https (a private CA); default the system's.
        retries: retries of a transient failure per request (:class:`~pipeline.pacs.dicomweb.DicomWebServer`).
        ae_title: this node's calling AE title for a DIMSE ``send_to``.

    Raises:
        ValueError: a malformed URL, one with credentials in it, or DICOMweb with a sharded (multi-GPU) run.
    """

    def __init__(
        self,
        runner: InferenceRunner,
        input: str | os.PathLike | None,
        send_to: str | None = None,
        ca_bundle: str | os.PathLike | None = None,
        retries: int = DEFAULT_RETRIES,
        ae_title: str = DEFAULT_AE_TITLE,
    ) -> None:
        self.runner = runner
        self.source = parse_study_url(str(input)) if is_dicomweb_url(input) else None
        check_ae_title(ae_title, "--ae_title")
        self.target = destination(send_to, ca_bundle, retries, ae_title)  # a malformed one refused here
        if runner.shard is not None and (self.source is not None or self.target is not None):
            raise ValueError("--input <DICOMweb URL> and --send_to run in one process: drop multi_gpu_inference.json")
        self.ca_bundle = ca_bundle
        self.retries = retries

    def _server(self, root: str) -> DicomWebServer:
        return DicomWebServer(root, ca_bundle=self.ca_bundle, retries=self.retries)

    def run(self) -> dict[str, Any]:
        """Retrieve (for a URL), segment, write, and send (with ``send_to``).

        Returns:
            The summary, as ``summary.json`` holds it.

        Raises:
            PacsError: the source or the destination refused or did not answer (before the model runs), or a
                retrieval was partial.
            SendError: some results were not sent (they stay in the output folder; the summary lists them).
            InferenceError: some inputs failed (the others were written, and sent).
        """
        target = self.target
        if target is not None:
            target.check_access("checking --send_to before the model runs")
        if self.source is None:
            return self._segment_and_send(target, {})
        same = isinstance(target, DicomWebServer) and target.root == self.source.root
        server = target if same else self._server(self.source.root)
        original = self.runner.input
        with retrieved_study(server, self.source, self.runner.series_rules) as (folder, retrieved):
            if not retrieved.series:
                reasons = "; ".join(f"{s['series_instance_uid']}: {s['reason']}" for s in retrieved.not_retrieved)
                raise ValueError(
                    f"nothing to segment in {self.source.url}: no series passes the series rules ({reasons})"
                )
            self.runner.input = Path(folder)
            try:
                return self._segment_and_send(target, {"input": self.source.url, "retrieved": retrieved.record()})
            finally:
                self.runner.input = original

    def _segment_and_send(self, target: Destination | None, record: dict[str, Any]) -> dict[str, Any]:
        failure: InferenceError | None = None
        try:
            self.runner.run()
        except InferenceError as e:  # the written series are still sent
            failure = e
        output_dir = self.runner.output_dir
        if target is not None:
            send_results(output_dir, target, extra=record)
        elif record:
            summary = read_summary(output_dir)
            summary[RECORD] = record
            write_json(summary, Path(output_dir) / "summary.json")
        if failure is not None:
            raise failure
        return read_summary(output_dir)
