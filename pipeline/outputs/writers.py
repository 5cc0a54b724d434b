"""The files of one inference run: what is written for a DICOM series, for a 2D image and for the run as a whole.

Per DICOM series (in ``<output_dir>/<study label>/<series label>/``): ``seg.dcm`` (DICOM SEG referencing the source
instances, one segment per structure), ``sr.dcm`` (DICOM SR measurement report of each segment's volume, referencing
the SEG and the source series; :mod:`pipeline.outputs.dicom_sr`), ``labels.nii.gz`` (label volume in the series'
patient geometry, in the dataset's label values), ``overlay.png`` (montage of slices with the mask outlined; with
several structures each in its colour, and a legend) and ``report.json`` (series UID, slice count, spacing, segmented
volume, per-slice area, each structure's volume when there are several, warnings, timings). Per 2D image (in
``<output_dir>/images/``): for a binary model ``<name>_mask.png`` (0/255) and ``<name>_overlay.png``; for a model of
several structures ``<name>_labels.png`` (the label map in the dataset's values) and ``<name>_overlay.png`` (outlines
in the structures' colours, and a legend). ``<output_dir>/summary.json`` lists every input with its status, and
``<output_dir>/report.html`` shows them all on one self-contained page (:mod:`pipeline.outputs.html_report`), from
small outlined slices drawn while each input's pixels are at hand.

Labels and file names are de-identified: series and studies are named by modality, series number and a hash of their
UID (:class:`pipeline.io.DicomSeries`), never by the folders they came from, and files by file name only.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch

from pipeline.atomic import atomic_folder, atomic_output, write_json
from pipeline.io.dicom_series import DicomSeries, safe_error_text
from pipeline.io.dicom_volume import SeriesVolume
from pipeline.io.nifti_slice import NiftiVolume
from pipeline.outputs import html_report
from pipeline.outputs.dicom_seg import write_dicom_seg
from pipeline.outputs.dicom_sr import write_measurement_report
from pipeline.outputs.html_report import frames_path, write_html_report, write_overlay_frames
from pipeline.outputs.label_nifti import write_label_nifti
from pipeline.outputs.overlay import write_label_png, write_mask_png, write_overlay_montage, write_overlay_png
from pipeline.segments import SegmentDescription, Structure, structures_from_config

__all__ = ["InferenceWriter"]

logger = logging.getLogger("pipeline.inference")


@dataclass
class InferenceWriter:
    """Writes the outputs of one inference run under ``output_dir``.

    Attributes:
        output_dir: the run's output folder.
        segment: what a binary model segments (label, SNOMED codes, colour): the one structure when ``structures``
            is not given; its label names the volume in the log line of a binary model.
        algorithm_name: written into DICOM SEG and the reports (the bundle's model name).
        algorithm_version: likewise (the bundle's version).
        weights: how the reports name the weights (:func:`pipeline.models.weights_names`).
        flip_tta: whether the predictions averaged mirrored inputs; recorded in the reports.
        overlay_window: intensity window of the overlays, e.g. the CT lung window; ``None``: 1st-99th percentile.
        structures: what the label values of the masks stand for (one DICOM SEG segment each, in value order);
            default the one structure of value 1 that
            ``segment`` describes.
        report_run: this run's folder for the pictures of ``report.html`` (:func:`~pipeline.outputs.html_report.
            frames_path`); default a new random name. The processes of one sharded run give the same name.
    """

    output_dir: Path
    segment: SegmentDescription
    algorithm_name: str = "pipeline"
    algorithm_version: str = "0"
    weights: str | list[str] | None = None
    flip_tta: bool = False
    overlay_window: Sequence[float] | None = None
    structures: Sequence[Structure] | None = None
    report_run: str = ""

    def __post_init__(self) -> None:
        self.structures = structures_from_config(self.structures, self.segment)
        self.report_run = self.report_run or uuid.uuid4().hex[:12]
        self._pictures = 0  # inputs whose pictures were drawn: at most MAX_PICTURES

    @property
    def several(self) -> bool:
        """Whether the model segments several structures (label maps, coloured outlines, per-structure numbers)
        rather than one (binary masks, red outlines)."""
        return len(self.structures) > 1

    @property
    def model(self) -> dict[str, Any]:
        """The ``model`` record of ``report.json`` and ``summary.json``."""
        return {
            "name": self.algorithm_name,
            "version": self.algorithm_version,
            "weights": self.weights,
            "flip_tta": self.flip_tta,
        }

    def write_series(
        self, series: DicomSeries, volume: SeriesVolume, mask: np.ndarray, measurements: dict[str, Any]
    ) -> dict[str, Any]:
        """Write a segmented series' ``seg.dcm``, ``sr.dcm``, ``labels.nii.gz``, ``overlay.png`` and ``report.json``.

        A source that highdicom cannot reference (no FrameOfReferenceUID, say) gets every output but ``seg.dcm`` and
        ``sr.dcm`` (the SR measures the SEG's segments); the report says why (``seg_missing``). The SEG has one
        segment per structure, and the SR one volume per segment; with several structures the overlay outlines each in
        its colour under a legend, and the log line gives each structure's volume.

        Args:
            series: the series (its label, UIDs and files).
            volume: its pixels and geometry.
            mask: (N, H, W) uint8 mask, cleaned: a label map in the structures' values (0/1 for a binary model).
            measurements: the runner's measurements, with its stage ``timings`` (and, with several structures, its
                ``structures`` list, written to the report as it is).

        Returns:
            The report (also written to ``report.json``).
        """
        folder = self.output_dir / series.study_label / series.label
        with atomic_folder(folder) as staging:  # a series that fails half-way leaves no complete-looking seg.dcm
            report = self._write_series(series, volume, mask, measurements, staging)
        measured = self._measured(mask, volume.spacing, measurements)
        logger.info(
            "%s: %d slices %dx%d, spacing %.2f x %.2f x %.2f mm: %s; %.2f s (model %.2f s) -> %s",
            series.label,
            volume.num_slices,
            *volume.array.shape[1:],
            *volume.spacing,
            measured,
            report["timings"]["total_s"],
            report["timings"]["model_forward_s"],
            folder.relative_to(self.output_dir).as_posix(),
        )
        return report

    def _write_series(
        self,
        series: DicomSeries,
        volume: SeriesVolume,
        mask: np.ndarray,
        measurements: dict[str, Any],
        folder: Path,
    ) -> dict[str, Any]:
        timings = measurements.pop("timings")
        tick = time.perf_counter()
        outputs = ["seg.dcm", "sr.dcm", "labels.nii.gz", "overlay.png", "report.json"]
        warnings = list(volume.warnings)
        seg_missing = None
        try:
            write_dicom_seg(
                mask,
                volume.datasets,
                folder / "seg.dcm",
                structures=self.structures,
                algorithm_name=self.algorithm_name,
                algorithm_version=self.algorithm_version,
            )
        except (MemoryError, OSError):  # a full disk is not a source that cannot be referenced: the series fails
            raise
        except Exception as e:  # sources highdicom refuses: the other outputs do not need what they lack
            seg_missing = (
                f"no DICOM SEG: the source series cannot be referenced ({safe_error_text(e, series.files[0])})"
            )
            outputs.remove("seg.dcm")
            outputs.remove("sr.dcm")  # the SR measures the SEG's segments: without a SEG it has nothing to reference
            warnings.append(seg_missing)
            logger.warning("%s: %s", series.label, seg_missing)
        timings["write_seg_s"] = time.perf_counter() - tick
        if seg_missing is None:
            tick = time.perf_counter()
            self._write_report_sr(series, volume, measurements, folder, outputs, warnings)
            timings["write_sr_s"] = time.perf_counter() - tick
        tick = time.perf_counter()
        write_label_nifti(mask, volume.affine, folder / "labels.nii.gz")
        timings["write_nifti_s"] = time.perf_counter() - tick
        tick = time.perf_counter()
        write_overlay_montage(
            volume.array,
            mask,
            folder / "overlay.png",
            window=self.overlay_window,
            structures=self.structures if self.several else None,
        )
        timings["write_overlay_s"] = time.perf_counter() - tick
        tick = time.perf_counter()
        self._write_frames(volume.array, mask, f"{series.study_label}/{series.label}")
        timings["write_frames_s"] = time.perf_counter() - tick
        timings["total_s"] = sum(v for k, v in timings.items() if k != "model_forward_s")  # its stages, summed

        report = {
            "series_label": series.label,
            "study_instance_uid": series.study_uid,
            "series_instance_uid": series.series_uid,
            "series_number": series.series_number,
            "modality": series.modality,
            "series_description": series.description,
            "num_slices": volume.num_slices,
            "slice_shape": list(volume.array.shape[1:]),
            **measurements,
            "warnings": warnings,
            "seg_missing": seg_missing,
            "model": self.model,
            "outputs": outputs,
            "timings": {k: round(v, 4) for k, v in timings.items()},
        }
        write_json(report, folder / "report.json")
        return report

    def _write_report_sr(
        self,
        series: DicomSeries,
        volume: SeriesVolume,
        measurements: dict[str, Any],
        folder: Path,
        outputs: list[str],
        warnings: list[str],
    ) -> None:
        """Write ``sr.dcm``, the measurement report of the SEG's segments; one that cannot be written is a warning
        (``outputs`` loses it), not a failed series: the SEG and the other outputs stand."""
        try:
            write_measurement_report(
                folder / "seg.dcm",
                volume.datasets,
                measurements,
                self.structures,
                folder / "sr.dcm",
                algorithm_name=self.algorithm_name,
                algorithm_version=self.algorithm_version,
            )
        except (MemoryError, OSError):
            raise
        except Exception as e:
            sr_missing = f"no DICOM SR: {safe_error_text(e, series.files[0])}"
            outputs.remove("sr.dcm")
            warnings.append(sr_missing)
            logger.warning("%s: %s", series.label, sr_missing)

    def write_volume(self, name: str, volume: NiftiVolume, mask: np.ndarray, measurements: dict[str, Any]) -> dict:
        """Write a segmented NIfTI volume's ``labels.nii.gz`` (in the input's own voxel order, with its affine and
        header, so that it lies on the input in any viewer), ``overlay.png`` and ``report.json``, in
        ``volumes/<name>/``.

        Args:
            name: the output name (the input's file name without its suffix).
            volume: the volume as :func:`pipeline.io.load_nifti_volume` read it.
            mask: (N, H, W) uint8 label map in the volume's display order (the structures' values).
            measurements: the runner's measurements, with its stage ``timings``.

        Returns:
            The report (also written to ``report.json``).
        """
        folder = self.output_dir / "volumes" / name
        with atomic_folder(folder) as staging:
            report = self._write_volume(name, volume, mask, measurements, staging)
        logger.info(
            "%s: %d slices %dx%d: %s; %.2f s -> %s",
            name,
            volume.num_slices,
            *volume.array.shape[1:],
            self._measured(mask, volume.spacing, measurements),
            report["timings"]["total_s"],
            folder.relative_to(self.output_dir).as_posix(),
        )
        return report

    def _write_volume(
        self, name: str, volume: NiftiVolume, mask: np.ndarray, measurements: dict[str, Any], folder: Path
    ) -> dict[str, Any]:
        timings = measurements.pop("timings")
        tick = time.perf_counter()
        labels, affine, header = volume.to_file_order(mask.astype(np.uint8))
        header.set_data_dtype(np.uint8)
        header.set_slope_inter(1, 0)
        image = nib.Nifti1Image(labels, affine, header)
        with atomic_output(folder / "labels.nii.gz") as tmp:
            nib.save(image, tmp)
        timings["write_nifti_s"] = time.perf_counter() - tick
        tick = time.perf_counter()
        write_overlay_montage(
            volume.array,
            mask,
            folder / "overlay.png",
            window=self.overlay_window,
            structures=self.structures if self.several else None,
        )
        timings["write_overlay_s"] = time.perf_counter() - tick
        tick = time.perf_counter()
        self._write_frames(volume.array, mask, f"volumes/{name}")
        timings["write_frames_s"] = time.perf_counter() - tick
        timings["total_s"] = sum(v for k, v in timings.items() if k != "model_forward_s")
        report = {
            "volume": name,
            "num_slices": volume.num_slices,
            "slice_shape": list(volume.array.shape[1:]),
            **measurements,
            "model": self.model,
            "outputs": ["labels.nii.gz", "overlay.png", "report.json"],
            "timings": {k: round(v, 4) for k, v in timings.items()},
        }
        write_json(report, folder / "report.json")
        return report

    def _measured(self, mask: np.ndarray, spacing: Sequence[float], measurements: dict[str, Any]) -> str:
        """The log line's volumes: each structure's and the total for several, the one structure's otherwise."""
        segmented, before = measurements["segmented_volume_ml"], measurements["volume_before_postprocessing_ml"]
        if not self.several:
            return f"{self.segment.label.lower()} {segmented:.1f} mL ({before:.1f} mL before post-processing)"
        structures = self._structure_volumes(mask, spacing, measurements)
        volumes = ", ".join(f"{s['label'].lower()} {s['volume_ml']:.1f} mL" for s in structures)
        return f"{volumes} ({segmented:.1f} mL in all, {before:.1f} mL before post-processing)"

    def _structure_volumes(
        self, mask: np.ndarray, spacing: Sequence[float], measurements: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """Each structure's ``label`` and ``volume_ml``: the runner's, else counted in ``mask``."""
        if measurements.get("structures"):
            return measurements["structures"]
        voxel_ml = float(np.prod(spacing)) / 1000.0
        return [
            {"label": s.label, "volume_ml": int(np.count_nonzero(mask == s.value)) * voxel_ml} for s in self.structures
        ]

    def write_image(self, name: str, image: torch.Tensor, pred: torch.Tensor) -> dict[str, Any]:
        """Write a 2D image's mask or label map (PNG at the image's own size) and its overlay.

        A binary model writes ``<name>_mask.png`` (0/255) and ``<name>_overlay.png`` (red outline); a model of
        several structures writes ``<name>_labels.png`` (uint8, the dataset's label values) and ``<name>_overlay.png``
        (each structure's outline in its colour, and a legend below the image).

        Args:
            name: the output name (the input's file name without its suffix).
            image: the (C, H, W) image as loaded; several channels are averaged for the overlay.
            pred: the (1, H, W) mask or label map at the image's size.

        Returns:
            ``{"area_px", "fraction", "outputs"}``: the foreground pixels (any structure), their share, and the files
            (relative to ``output_dir``); with several structures also ``"structures"``, one ``{"value", "label",
            "area_px", "fraction"}`` per structure in value order.
        """
        folder = self.output_dir / "images"
        display = image.numpy().mean(axis=0) if image.shape[0] > 1 else image.numpy()[0]
        record: dict[str, Any] = {}
        if self.several:
            labels = pred[0].numpy()
            mask_path = write_label_png(labels, folder / f"{name}_labels.png")
            mask = labels.astype(np.uint8)
            overlay_path = write_overlay_png(display, mask, folder / f"{name}_overlay.png", structures=self.structures)
            record["structures"] = [
                {"value": s.value, "label": s.label, "area_px": area, "fraction": round(area / mask.size, 6)}
                for s, area in ((s, int(np.count_nonzero(mask == s.value))) for s in self.structures)
            ]
        else:
            mask = pred[0].numpy().astype(np.uint8)
            mask_path = write_mask_png(mask, folder / f"{name}_mask.png")
            overlay_path = write_overlay_png(display, mask, folder / f"{name}_overlay.png")
        self._write_frames(display[None], mask[None], f"images/{name}", window=None)  # its own window, as its overlay
        area = int(np.count_nonzero(mask))
        return {
            "area_px": area,
            "fraction": round(area / mask.size, 6),
            **record,
            "outputs": [p.relative_to(self.output_dir).as_posix() for p in (mask_path, overlay_path)],
        }

    def _write_frames(self, volume: np.ndarray, mask: np.ndarray, folder: str, **kwargs: Any) -> Path | None:
        """The small outlined slices of one input for ``report.html``, drawn now, while its pixels are at hand
        (:func:`~pipeline.outputs.html_report.write_overlay_frames`), in the overlays' window and colours.

        The page is a view of the outputs, not one of them: past :data:`~pipeline.outputs.html_report.MAX_PICTURES`
        inputs nothing is drawn, and a picture that cannot be written is logged and left out (the page links the
        input's overlay instead); the input's own outputs and status stand either way.
        """
        if self._pictures >= html_report.MAX_PICTURES:
            return None
        self._pictures += 1
        settings = {"window": self.overlay_window, "structures": self.structures if self.several else None}
        path = frames_path(self.output_dir, folder, self.report_run)
        try:
            return write_overlay_frames(volume, mask, path, **{**settings, **kwargs})
        except MemoryError:
            raise
        except Exception as e:
            logger.warning("%s: no picture for report.html (%s: %s)", folder, type(e).__name__, e)
            return None

    def write_summary(self, summary: dict[str, Any]) -> Path:
        """Write the run's ``summary.json`` (every input's outcome), with the ``model`` record first, and the page
        that shows it, ``report.html`` (:func:`~pipeline.outputs.html_report.write_html_report`).

        A page that cannot be written is logged as an error; ``summary.json``, the run's record, stands.
        """
        summary = {"model": self.model, **summary}
        path = write_json(summary, self.output_dir / "summary.json")
        try:
            write_html_report(summary, self.output_dir, self.report_run)
        except MemoryError:
            raise
        except Exception as e:
            logger.error("report.html not written: %s: %s", type(e).__name__, e)
        return path
