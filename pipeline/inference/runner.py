"""Inference over everything under one input path, one output folder per series or volume, failures isolated.

The runner finds the inputs, reads them, runs the model and hands each result, a label map in the structures' values,
to :class:`pipeline.outputs.InferenceWriter`: one folder per DICOM series (``seg.dcm`` with a segment per structure,
``labels.nii.gz``, ``overlay.png``, ``report.json``), one per 3D NIfTI volume (``labels.nii.gz`` with the input's
affine, ``overlay.png``, ``report.json``), and a mask (or label map) and overlay per 2D image.
``<output_dir>/summary.json`` lists every input with its status, the series that selection left out and the files that
were skipped, each with the reason.

One bad series or image is reported (logged, and in the summary with its reason) and the others still run; the run
then ends with ``InferenceError`` so that the exit status says something failed. Labels and file names are
de-identified: series and studies are named by modality, series number and a hash of their UID, never by the
folders they came from, and files are named by file name only.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor, NibabelReader

from pipeline import distributed
from pipeline.atomic import interrupts_deferred
from pipeline.inference.input_fit import EXIT_FLAGGED, InputFit, quality
from pipeline.inference.inputs import ImageInput, InferenceInputs, find_inputs
from pipeline.inference.overlap import InOrder, read_ahead, stage_executor
from pipeline.inference.predictor import NonFiniteOutputError, SlicePredictor
from pipeline.io.array import LoadSlice
from pipeline.io.dicom_series import DicomSeries, DicomSeriesError, SeriesRules, safe_error_text
from pipeline.io.dicom_volume import SeriesVolume, load_series_volume
from pipeline.io.nifti_slice import NiftiVolume, load_nifti_volume
from pipeline.io.readers import MAX_SLICE_PIXELS
from pipeline.models.weights import weights_names
from pipeline.outputs.measurements import mask_measurements
from pipeline.outputs.writers import InferenceWriter
from pipeline.overrides import is_bundle_command
from pipeline.segments import SegmentDescription, Structure, structures_from_config
from pipeline.transforms.cleanup import VolumeCleanup

__all__ = ["InferenceError", "InferenceRunner", "exit_status"]

logger = logging.getLogger("pipeline.inference")


class InferenceError(RuntimeError):
    """Some inputs could not be segmented; the others were, and every outcome is in ``summary.json``."""


@dataclass
class _SeriesWork:
    """A series between stages: its volume, its preprocessed batches, then its (N, H, W) uint8 mask as predicted, and
    the stage timings."""

    volume: SeriesVolume | NiftiVolume
    batches: list[dict[str, Any]] = field(default_factory=list)
    mask: np.ndarray | None = None
    timings: dict[str, float] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)


class InferenceRunner:
    """Segment every 2D image and selected DICOM series under ``input`` and write the outputs.

    Args:
        predictor: runs the network on in-memory (C, H, W) slices and returns masks at native size.
        input: an image file, a single DICOM file, a folder of images, a DICOM study folder or a folder of studies;
            empty or ``None`` until :meth:`run`, which refuses it.
        output_dir: where outputs go (created).
        series_rules: DICOM series selection rules.
        segment: what a binary model segments (label and SNOMED codes), for DICOM SEG and the reports; a bundle
            config's ``segment`` dict is accepted (:meth:`SegmentDescription.from_config`).
        structures: what the model segments, each with its label value (the bundles' ``@structures``); default the
            one structure of value 1 that ``segment`` describes. The predictor's masks hold these values.
        algorithm_name: algorithm name written into DICOM SEG and the reports (the bundle's model name).
        algorithm_version: algorithm version (the bundle's version).
        checkpoint: weights file(s) the network was loaded from (an ensemble's members); reported by name only
            (:func:`~pipeline.models.weights_names`).
        overlay_window: intensity window for overlays, e.g. the CT lung window; ``None``: 1st-99th percentile.
        min_image_size: smallest height or width accepted; smaller images are refused with a clear error.
        batch_size: images loaded and predicted together (memory bound for folders of images).
        volume_cleanup: 3D post-processing of each series' mask (largest components, small islands, holes); the
            outputs hold the cleaned mask and ``report.json`` both volumes. ``None`` leaves the mask as predicted.
        flip_tta: whether the predictor averages mirrored inputs; recorded in the reports.
        max_pixels: the largest 2D image accepted (height x width), refused from its header before decoding.
        overlap: read and preprocess the next input, and finish and write the last one, on background threads while
            the model runs (:mod:`pipeline.inference.overlap`); ``False`` runs the stages one after the other.
            ``None`` (and the bundles' ``--overlap_io auto``) overlaps when the predictor runs on CUDA: on a CPU the
            model already keeps every core busy, and the stages only compete with it
            (``docs/evidence/study-inference-speed.md``).
        shard: ``(rank, number of processes)`` when several processes split the inputs
            (``bundles/common/multi_gpu_inference.json``, :func:`pipeline.distributed.shard`): each segments its share
            (:meth:`InferenceInputs.shard`), and process 0 writes one ``summary.json`` for all, in input order.
        input_fit: what the model was trained on (:class:`~pipeline.inference.input_fit.InputFit`): each input is
            checked against it before the model runs (refused, or flagged), and each result after; default the
            checks that need no training figures.
    """

    def __init__(
        self,
        predictor: SlicePredictor,
        input: str | os.PathLike | None,
        output_dir: str | os.PathLike,
        series_rules: SeriesRules | None = None,
        segment: SegmentDescription | Mapping[str, Any] | None = None,
        structures: Sequence[Structure | Mapping[str, Any]] | None = None,
        algorithm_name: str = "pipeline",
        algorithm_version: str = "0",
        checkpoint: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
        overlay_window: Sequence[float] | None = None,
        min_image_size: int = 32,
        batch_size: int = 32,
        volume_cleanup: VolumeCleanup | None = None,
        flip_tta: bool = False,
        max_pixels: int | None = MAX_SLICE_PIXELS,
        overlap: bool | None = None,
        shard: tuple[int, int] | None = None,
        input_fit: InputFit | None = None,
    ) -> None:
        self.predictor = predictor
        self.input = None if input is None or str(input) == "" else Path(input)  # refused by run(), not here
        self.output_dir = Path(output_dir)
        self.series_rules = series_rules or SeriesRules()
        self.segment = SegmentDescription.from_config(segment)
        self.structures = structures_from_config(structures, self.segment)
        self.writer = InferenceWriter(
            self.output_dir,
            self.segment,
            structures=self.structures,
            algorithm_name=algorithm_name,
            algorithm_version=str(algorithm_version),
            weights=weights_names(checkpoint),
            flip_tta=bool(flip_tta),
            overlay_window=tuple(overlay_window) if overlay_window is not None else None,
            # the processes of a sharded run draw into one folder, which process 0's page reads
            report_run=f"shards-{os.environ.get('TORCHELASTIC_RUN_ID', 'run')}" if shard is not None else "",
        )
        self.min_image_size = min_image_size
        self.batch_size = batch_size
        self.volume_cleanup = volume_cleanup if volume_cleanup is not None and volume_cleanup.active else None
        self.loader = LoadSlice(max_pixels=max_pixels)
        self._nifti_reader = NibabelReader(as_closest_canonical=False)
        self.overlap = predictor.device.type == "cuda" if overlap is None else bool(overlap)
        if shard is not None and not 0 <= shard[0] < shard[1]:
            raise ValueError(f"shard {shard[0]} of {shard[1]}: the rank must be in 0..{shard[1] - 1}")
        self.shard = tuple(shard) if shard is not None else None
        self.input_fit = input_fit if input_fit is not None else InputFit()

    def retargeted(self, input: str | os.PathLike, output_dir: str | os.PathLike) -> InferenceRunner:
        """A runner with this one's model and settings for another input and output folder: a PACS node's runner
        for each series it receives, so that the model is loaded once (:mod:`pipeline.pacs.node`).

        Args:
            input: what the new runner segments.
            output_dir: where it writes (its own ``summary.json`` and ``report.html``).
        """
        other = copy.copy(self)
        other.input = Path(input)
        other.output_dir = Path(output_dir)
        other.writer = dataclasses.replace(self.writer, output_dir=other.output_dir, report_run="")
        return other

    # ---------------------------------------------------------------------------------------------------- series
    # A series goes through three stages, each timed into its report: ``_read_series`` (files, then preprocessing,
    # on the reading thread), ``_infer_series`` (the model, then the inverse resize and threshold batch by batch, so
    # that neither the batches nor float masks of a whole series are held, on the calling thread) and
    # ``_finish_series`` (3D clean-up and measurements; then the files, on the writing thread).

    def _read_series(self, series: DicomSeries) -> _SeriesWork:
        tick = time.perf_counter()
        work = _SeriesWork(load_series_volume(series))
        work.flags = self.input_fit.check(series.label, work.volume.array, volume=True)
        work.timings["read_s"] = time.perf_counter() - tick
        work.batches = self._prepare(work.volume)
        work.timings["preprocess_s"] = time.perf_counter() - tick - work.timings["read_s"]
        return work

    def _prepare(self, volume: SeriesVolume) -> list[dict[str, Any]]:
        items = [{"image": MetaTensor(torch.from_numpy(np.ascontiguousarray(s))[None])} for s in volume.array]
        return list(self.predictor.prepare(items))

    def _infer_series(self, work: _SeriesWork) -> _SeriesWork:
        self.predictor.reset_timers()
        tick, restore_s = time.perf_counter(), 0.0
        masks: list[np.ndarray] = []
        for batch in work.batches:
            batch = self.predictor.infer(batch)
            restore_tick = time.perf_counter()
            masks.extend(m[0].numpy().astype(np.uint8) for m in self.predictor.restore(batch))
            restore_s += time.perf_counter() - restore_tick
        work.batches, work.mask = [], np.stack(masks)
        work.timings["predict_s"] = time.perf_counter() - tick - restore_s
        work.timings["model_forward_s"] = self.predictor.forward_seconds
        work.timings["restore_s"] = restore_s
        return work

    def _finish_series(self, work: _SeriesWork) -> tuple[np.ndarray, dict[str, Any]]:
        mask = work.mask
        volume = work.volume
        thickness = getattr(volume, "slice_thickness", None)  # non-uniform DICOM spacing: each slice's own
        predicted = mask_measurements(mask, volume.spacing, self.structures, thickness)
        cleanup = None
        if self.volume_cleanup is not None:
            tick = time.perf_counter()
            mask, cleanup = self.volume_cleanup(mask, volume.spacing)
            work.timings["postprocess_s"] = time.perf_counter() - tick
        measured = mask_measurements(mask, volume.spacing, self.structures, thickness)
        flags = work.flags + self.input_fit.check_result((mask > 0).mean(axis=(1, 2)))
        report = {
            "spacing_mm": {"slice": volume.spacing[0], "row": volume.spacing[1], "column": volume.spacing[2]},
            "segment": ", ".join(s.label for s in self.structures),
            "segmented_volume_ml": measured["volume_ml"],
            "volume_before_postprocessing_ml": predicted["volume_ml"],
            "postprocessing": cleanup,
            "segmented_voxels": measured["voxels"],
            "per_slice": measured["per_slice"],
        }
        if len(self.structures) > 1:
            report["structures"] = [
                {**after, "volume_before_postprocessing_ml": before["volume_ml"]}
                for after, before in zip(measured["structures"], predicted["structures"], strict=True)
            ]
        return mask, {**report, "quality": quality(flags), "timings": work.timings}

    def segment_volume(self, volume: SeriesVolume) -> tuple[np.ndarray, dict[str, Any]]:
        """Predict every slice of a series and clean the mask in 3D; nothing is written.

        Args:
            volume: the series as :func:`~pipeline.io.dicom_volume.load_series_volume` reads it.

        Returns:
            ``(mask, measurements)``: the (N, H, W) uint8 mask and ``report.json``'s measurements of it
            (``spacing_mm``, ``segmented_volume_ml``, ``volume_before_postprocessing_ml``, ``postprocessing``,
            ``segmented_voxels``, ``per_slice``), plus ``timings`` in seconds (``preprocess_s``, ``predict_s``
            with ``model_forward_s`` inside it, ``restore_s`` and ``postprocess_s``).
        """
        work = _SeriesWork(volume)
        tick = time.perf_counter()
        work.flags = self.input_fit.check(_volume_name(volume), volume.array, volume=True)
        work.batches = self._prepare(volume)
        work.timings["preprocess_s"] = time.perf_counter() - tick
        return self._finish_series(self._infer_series(work))

    def run_series(self, series: DicomSeries) -> dict[str, Any]:
        """Load, segment and write one DICOM series, one stage after the other.

        Returns:
            The series report (also written to ``report.json``).
        """
        work = self._infer_series(self._read_series(series))
        return self.writer.write_series(series, work.volume, *self._finish_series(work))

    def _read_volume(self, image: ImageInput) -> _SeriesWork:
        tick = time.perf_counter()
        work = _SeriesWork(load_nifti_volume(image.path, self._nifti_reader, self.loader.max_pixels))
        work.flags = self.input_fit.check(image.name, work.volume.array, volume=True)
        work.timings["read_s"] = time.perf_counter() - tick
        work.batches = self._prepare(work.volume)
        work.timings["preprocess_s"] = time.perf_counter() - tick - work.timings["read_s"]
        return work

    def _volume_outputs(self, image: ImageInput, work: _SeriesWork, emit: Callable[[dict[str, Any]], None]) -> None:
        """The writer's job for one NIfTI volume: finish it, write its outputs and emit its summary record."""
        with interrupts_deferred():  # the outputs and their record, or neither
            try:
                report = self.writer.write_volume(image.name, work.volume, *self._finish_series(work))
            except MemoryError:
                raise
            except Exception as e:
                emit(_failure(image.name, "nifti volume", e, image.path))
                return
            emit(
                {
                    "input": image.name,
                    "kind": "nifti volume",
                    **_status(image.name, report["quality"]),
                    "num_slices": report["num_slices"],
                    "segmented_volume_ml": report["segmented_volume_ml"],
                    "seconds": report["timings"]["total_s"],
                    "model_forward_s": report["timings"]["model_forward_s"],
                }
            )

    def _series_outputs(self, series: DicomSeries, work: _SeriesWork, emit: Callable[[dict[str, Any]], None]) -> None:
        """The writer's job for one series: finish it, write its outputs and emit its summary record (``ok`` or
        ``flagged``, or why it failed)."""
        with interrupts_deferred():  # the outputs and their record, or neither
            try:
                report = self.writer.write_series(series, work.volume, *self._finish_series(work))
            except MemoryError:
                raise
            except Exception as e:
                emit(_failure(series.label, "dicom series", e, series.files[0]))
                return
            emit(
                {
                    "input": series.label,
                    "kind": "dicom series",
                    **_status(series.label, report["quality"]),
                    "series_instance_uid": series.series_uid,
                    "num_slices": report["num_slices"],
                    "segmented_volume_ml": report["segmented_volume_ml"],
                    "warnings": report["warnings"],
                    "seg_missing": report["seg_missing"],
                    "seconds": report["timings"]["total_s"],
                    "model_forward_s": report["timings"]["model_forward_s"],
                }
            )

    # ---------------------------------------------------------------------------------------------------- images
    def _load_image(self, image: ImageInput) -> tuple[MetaTensor, list[str]]:
        array = self.loader(image.path)
        height, width = array.shape[-2:]
        if min(height, width) < self.min_image_size:
            raise ValueError(
                f"{image.path.name}: image is {height}x{width} pixels; the model needs at least "
                f"{self.min_image_size} pixels in each direction"
            )
        if array.is_floating_point() and not bool(torch.isfinite(array).all()):
            bad = int((~torch.isfinite(array)).sum())
            raise ValueError(
                f"{image.path.name}: {bad} of {array.numel()} pixel values are NaN or infinite; nothing can be "
                "segmented from them. Fix or re-export the image."
            )
        return array, self.input_fit.check(image.path.name, array)

    def _read_images(self, images: Sequence[ImageInput]) -> list[tuple[ImageInput, MetaTensor | Exception, list[str]]]:
        """Load a batch of images, each with its input flags; an image that cannot be loaded (or is refused) comes
        back with its error instead."""
        loaded: list[tuple[ImageInput, MetaTensor | Exception, list[str]]] = []
        for image in images:
            try:
                loaded.append((image, *self._load_image(image)))
            except MemoryError:
                raise
            except Exception as e:
                loaded.append((image, e, []))
        return loaded

    def _predict_images(self, arrays: list[MetaTensor]) -> list[torch.Tensor | Exception]:
        """Predictions for a batch; when the batch fails, each image alone, so that one bad image fails alone."""
        try:
            return list(self.predictor([{"image": array} for array in arrays]))
        except MemoryError:
            raise
        except Exception as e:
            if len(arrays) == 1:
                return [e]
        outcomes: list[torch.Tensor | Exception] = []
        for array in arrays:
            try:
                outcomes.append(self.predictor([{"image": array}])[0])
            except MemoryError:
                raise
            except Exception as e:
                outcomes.append(e)
        return outcomes

    def _image_outputs(
        self,
        outcomes: list[tuple[ImageInput, MetaTensor | Exception, torch.Tensor | Exception | None, list[str]]],
        seconds: float,
        emit: Callable[[dict[str, Any]], None],
    ) -> None:
        """The writer's job for a batch of images: masks and overlays, and one record per image, in order, each
        emitted as soon as that image's outputs are written."""
        for image, array, pred, flags in outcomes:
            with interrupts_deferred():  # an image's files and its record, or neither
                self._image_output(image, array, pred, flags, seconds, emit)

    def _image_output(
        self,
        image: ImageInput,
        array: MetaTensor | Exception,
        pred: torch.Tensor | Exception | None,
        flags: list[str],
        seconds: float,
        emit: Callable[[dict[str, Any]], None],
    ) -> None:
        error = array if isinstance(array, Exception) else pred if isinstance(pred, Exception) else None
        if error is None:
            try:
                record = self.writer.write_image(image.name, array, pred)
            except MemoryError:
                raise
            except Exception as e:
                error = e
        if error is not None:
            emit(_failure(image.name, "image", error, image.path))
            return
        flags = flags + self.input_fit.check_result(float((pred > 0).float().mean()))
        status = _status(image.name, quality(flags))
        emit({"input": image.name, "kind": "image", **status, **record, "seconds": seconds})
        logger.info("%s: %d foreground pixels -> %s", image.name, record["area_px"], record["outputs"][0])

    def _run_images(self, images: Sequence[ImageInput], reader: Executor, outputs: InOrder) -> None:
        """Segment 2D images in batches: the next batch loads and the last one writes while this one is predicted."""
        batches = [images[i : i + self.batch_size] for i in range(0, len(images), self.batch_size)]
        for _, read in read_ahead(reader, self._read_images, batches):
            loaded = read.result()
            arrays = [array for _, array, _ in loaded if not isinstance(array, Exception)]
            tick = time.perf_counter()
            predictions = iter(self._predict_images(arrays) if arrays else [])
            seconds = (time.perf_counter() - tick) / max(len(arrays), 1)
            outcomes = [
                (image, array, None if isinstance(array, Exception) else next(predictions), flags)
                for image, array, flags in loaded
            ]
            outputs.submit(self._image_outputs, outcomes, seconds)

    # ------------------------------------------------------------------------------------------------------- run
    def inputs(self) -> InferenceInputs:
        """What :meth:`run` segments: the images, selected DICOM series and NIfTI volumes under ``input`` (none when
        no input is set yet), the run's own output folder left out. The inference configs' ``dataset``, MONAI's
        inference property."""
        if self.input is None:
            return InferenceInputs()
        return find_inputs(self.input, self.series_rules, exclude=[self.output_dir])

    def run(self) -> dict[str, Any]:
        """Segment everything, write the outputs and ``summary.json``.

        Returns:
            The summary (also written to ``<output_dir>/summary.json``).

        Raises:
            FileNotFoundError: the input does not exist.
            OSError: the output folder cannot be created or written to (checked before anything runs).
            ValueError: nothing to segment was found, the network cannot take the preprocessed input, or the output
                folder is the input folder.
            InferenceError: after all inputs ran, when at least one of them failed.
        """
        start = time.perf_counter()
        if self.input is None:
            raise ValueError(
                "no inference input given: pass --input <image, folder, DICOM study or DICOMweb study URL>"
            )
        if self.input.is_dir() and self.output_dir.resolve() == self.input.resolve():
            raise ValueError(
                f"--output_dir {self.output_dir} is the input folder: the outputs would mix with the inputs, and a "
                "rerun would segment its own masks. Pass another --output_dir (the default is beside the model)."
            )
        _check_writable(self.output_dir)
        inputs = self.inputs()
        if not len(inputs):
            raise ValueError(_nothing_found(inputs))
        try:
            self.predictor.check_input([{"image": MetaTensor(torch.zeros(1, 64, 64))}])
        except NonFiniteOutputError as e:  # broken weights: name them (file names only, as the reports do)
            names = self.writer.weights
            weights = names if isinstance(names, str) else ", ".join(names or []) or "the weights"
            raise NonFiniteOutputError(f"{weights}: {e}") from None

        records: list[dict[str, Any]] = []
        interrupted = False
        try:
            self._run_all(inputs if self.shard is None else inputs.shard(*self.shard), records)
        except KeyboardInterrupt:  # Ctrl-C, or SIGTERM in the bundle command (pipeline.errors.readable_errors)
            interrupted = True
            raise
        finally:  # also when something unexpected stops the run: say what was done
            records = records if interrupted else self._gather(inputs, records)
            summary = self._write_summary(inputs, records, start, interrupted)
        failed = [r for r in records if r["status"] == "failed"]
        if failed:
            raise InferenceError(
                f"{len(failed)} of {len(records)} inputs failed (the others were written): "
                + "; ".join(f"{r['input']}: {r['error']}" for r in failed)
            )
        return summary

    def _run_all(self, inputs: InferenceInputs, records: list[dict[str, Any]]) -> None:
        with stage_executor(self.overlap, "read") as reader, stage_executor(self.overlap, "write") as writer:
            outputs = InOrder(writer, records)
            interrupted = False
            try:
                for series, read in read_ahead(reader, self._read_series, inputs.series):
                    try:
                        work = self._infer_series(read.result())
                    except MemoryError:
                        raise
                    except Exception as e:
                        outputs.add(_failure(series.label, "dicom series", e, series.files[0]))
                        continue
                    outputs.submit(self._series_outputs, series, work)
                for image, read in read_ahead(reader, self._read_volume, inputs.volumes):
                    try:
                        work = self._infer_series(read.result())
                    except MemoryError:
                        raise
                    except Exception as e:
                        outputs.add(_failure(image.name, "nifti volume", e, image.path))
                        continue
                    outputs.submit(self._volume_outputs, image, work)
                self._run_images(inputs.images, reader, outputs)
            except KeyboardInterrupt:
                interrupted = True
                raise
            finally:  # what was written is in the summary, also when something stops the run
                try:
                    outputs.finish(interrupted)
                except KeyboardInterrupt:  # while waiting for the last outputs: collect what they wrote
                    outputs.finish(interrupted=True)
                    raise

    def _gather(self, inputs: InferenceInputs, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Every process's records, in input order, when the inputs are sharded; ``records`` otherwise."""
        if self.shard is None:
            return records
        position = {("dicom series", s.label): i for i, s in enumerate(inputs.series)}
        position |= {("nifti volume", v.name): len(position) + i for i, v in enumerate(inputs.volumes)}
        position |= {("image", image.name): len(position) + i for i, image in enumerate(inputs.images)}
        merged = [record for part in distributed.all_gather(records) for record in part]
        return sorted(merged, key=lambda r: position.get((r["kind"], r["input"]), len(position)))

    def _write_summary(
        self, inputs: InferenceInputs, records: list[dict[str, Any]], start: float, interrupted: bool = False
    ) -> dict[str, Any]:
        failed = [r for r in records if r["status"] == "failed"]
        flagged = [r for r in records if r["status"] == "flagged"]
        summary = {
            "interrupted": interrupted,
            "model": self.writer.model,
            "inputs": records,
            "not_selected": [
                {"input": s.label, "series_instance_uid": s.series_uid, "reason": why} for s, why in inputs.rejected
            ],
            "skipped_files": [{"file": f.path.name, "reason": f.reason} for f in inputs.skipped],
            "num_ok": len(records) - len(failed) - len(flagged),
            "num_flagged": len(flagged),
            "num_failed": len(failed),
            "num_not_run": max(0, len(inputs) - len(records)) if self.shard is None else None,
            "wall_time_s": round(time.perf_counter() - start, 3),
            "processes": 1 if self.shard is None else self.shard[1],
        }
        if self.shard is not None and self.shard[0] != 0:
            return summary  # process 0 writes it (interrupted: its own records only, num_not_run unknown)
        self.writer.write_summary(summary)
        if interrupted:
            logger.warning(
                "inference interrupted: %d inputs written (%d ok, %d flagged), %d failed, %d not run; "
                "summary.json in %s",
                len(records) - len(failed),
                summary["num_ok"],
                len(flagged),
                len(failed),
                summary["num_not_run"] or 0,
                self.output_dir,
            )
            return summary
        logger.info(
            "inference done: %d ok, %d flagged, %d failed, %d series not selected, %d files skipped in %.1f s; "
            "summary.json in %s",
            summary["num_ok"],
            len(flagged),
            len(failed),
            len(inputs.rejected),
            len(inputs.skipped),
            summary["wall_time_s"],
            self.output_dir,
        )
        return summary


def _check_writable(output_dir: Path) -> None:
    """Create ``output_dir`` and write a file there, before any model runs: an output problem is not an input's."""
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=output_dir):
            pass
    except OSError as e:
        raise OSError(
            f"cannot write to the output folder {output_dir} ({e.strerror or type(e).__name__}); "
            "pass --output_dir <a folder you can write to>"
        ) from e


def _volume_name(volume: SeriesVolume | NiftiVolume) -> str:
    """How messages name a series or volume given in memory: its series label, or "the volume"."""
    series = getattr(volume, "series", None)
    return series.label if series is not None else Path(getattr(volume, "path", "the volume")).name


def _status(name: str, quality: Mapping[str, Any]) -> dict[str, Any]:
    """A written input's summary status: ``ok``, or ``flagged`` with its reasons (also logged)."""
    if quality["status"] == "ok":
        return {"status": "ok"}
    logger.warning("%s: flagged: %s", name, "; ".join(quality["flags"]))
    return {"status": "flagged", "flags": list(quality["flags"])}


def exit_status(summary: Mapping[str, Any]) -> Mapping[str, Any]:
    """The bundle command's last step: exit with :data:`~pipeline.inference.input_fit.EXIT_FLAGGED` when an input
    is flagged (failures have already raised :class:`InferenceError`, status 1). Python callers read the summary.

    Returns:
        ``summary``, when nothing is flagged or the process is not the bundle command.
    """
    if summary.get("num_flagged") and is_bundle_command():
        distributed.finish()  # the config's finalize step does not run after an exit
        logger.warning(
            "%d of %d inputs are flagged (written, but unlike the training data or results; see summary.json): "
            "exit status %d",
            summary["num_flagged"],
            len(summary.get("inputs", [])),
            EXIT_FLAGGED,
        )
        raise SystemExit(EXIT_FLAGGED)
    return summary


def _failure(name: str, kind: str, error: Exception, path: Path) -> dict[str, Any]:
    """Log and record one input's failure; the message names files by file name only."""
    message = safe_error_text(error, path) if not isinstance(error, DicomSeriesError) else str(error)
    logger.error("%s: %s", name, message)
    return {"input": name, "kind": kind, "status": "failed", "error": message}


def _nothing_found(inputs: InferenceInputs) -> str:
    message = "nothing to segment: no 2D image and no selectable DICOM series in the input"
    if inputs.rejected:
        reasons = "; ".join(f"{s.label}: {reason}" for s, reason in inputs.rejected)
        message += f" ({len(inputs.rejected)} series not selected: {reasons})"
    if inputs.skipped:
        message += f" ({len(inputs.skipped)} files skipped, e.g. {inputs.skipped[0].reason})"
    return message
