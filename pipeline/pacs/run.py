"""The bundle's inference with a DICOMweb server at either end: ``--input <study URL>`` and ``--send_to <root>``.

:class:`DicomWebInference` wraps the :class:`~pipeline.inference.InferenceRunner` the config builds, so that the runner
stays a reader of folders: with a study or series URL as ``input``, it retrieves the instances into a private
temporary folder (:func:`~pipeline.pacs.retrieve.retrieved_study`), points the runner at it and runs it, which selects
the series, runs the model and writes the outputs and ``summary.json`` exactly as for a folder; with ``send_to``, it
then sends each written series' DICOM files (:func:`~pipeline.pacs.send.send_results`). The send server is asked one
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
from pipeline.pacs.address import is_dicomweb_url, parse_root, parse_study_url
from pipeline.pacs.dicomweb import DEFAULT_RETRIES, DicomWebServer
from pipeline.pacs.retrieve import retrieved_study
from pipeline.pacs.send import RECORD, read_summary, send_results

__all__ = ["DicomWebInference"]

logger = logging.getLogger("pipeline.pacs")


class DicomWebInference:
    """Run ``runner`` on a folder or a DICOMweb study, and send the results to a DICOMweb server when asked.

    Args:
        runner: the inference runner (its ``input`` is replaced by the retrieved folder for the run).
        input: what ``--input`` says: a path (the runner reads it as it is) or a DICOMweb study or series URL.
        send_to: a DICOMweb root to store the results in (STOW-RS), or ``None``/empty for none.
        ca_bundle: a PEM file of certificate authorities to trust for https (a private CA); default the system's.
        retries: retries of a transient failure per request (:class:`~pipeline.pacs.dicomweb.DicomWebServer`).

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
    ) -> None:
        self.runner = runner
        self.source = parse_study_url(str(input)) if is_dicomweb_url(input) else None
        self.send_to = parse_root(str(send_to)) if send_to not in (None, "") else None
        if runner.shard is not None and (self.source is not None or self.send_to is not None):
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
            DicomWebError: the source or the destination refused or did not answer (before the model runs), or a
                retrieval was partial.
            SendError: some results were not sent (they stay in the output folder; the summary lists them).
            InferenceError: some inputs failed (the others were written, and sent).
        """
        target = self._server(self.send_to) if self.send_to is not None else None
        if target is not None:
            target.check_access("checking --send_to before the model runs")
        if self.source is None:
            return self._segment_and_send(target, {})
        server = target if target is not None and target.root == self.source.root else self._server(self.source.root)
        original = self.runner.input
        with retrieved_study(server, self.source) as (folder, retrieved):
            self.runner.input = Path(folder)
            try:
                return self._segment_and_send(target, {"input": self.source.url, "retrieved": retrieved.record()})
            finally:
                self.runner.input = original

    def _segment_and_send(self, target: DicomWebServer | None, record: dict[str, Any]) -> dict[str, Any]:
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
