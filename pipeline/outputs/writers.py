"""The files of one inference run: what is written for a DICOM series, for a 2D image and for the run as a whole.

Per DICOM series (in ``<output_dir>/<study label>/<series label>/``): ``seg.dcm`` (DICOM SEG referencing the source
instances), ``labels.nii.gz`` (label volume in the series' patient geometry), ``overlay.png`` (montage of slices with
the mask outlined) and ``report.json`` (series UID, slice count, spacing, segmented volume, per-slice area,
warnings, timings). Per 2D image (in ``<output_dir>/images/``): ``<name>_mask.png`` (0/255) and
``<name>_overlay.png``. ``<output_dir>/summary.json`` lists every input with its status.

Labels and file names are de-identified: series and studies are named by modality, series number and a hash of their
UID (:class:`pipeline.io.DicomSeries`), never by the folders they came from, and files by file name only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.atomic import write_json
from pipeline.io.dicom_series import DicomSeries, safe_error_text
from pipeline.io.dicom_volume import SeriesVolume
from pipeline.outputs.dicom_seg import write_dicom_seg
from pipeline.outputs.label_nifti import write_label_nifti
from pipeline.outputs.overlay import write_mask_png, write_overlay_montage, write_overlay_png
from pipeline.segments import SegmentDescription, Structure, structures_from_config

__all__ = ["InferenceWriter"]

logger = logging.getLogger("pipeline.inference")


@dataclass
class InferenceWriter:
    """Writes the outputs of one inference run under ``output_dir``.

    Attributes:
        output_dir: the run's output folder.
        segment: what the model segments (label, SNOMED codes, colour), for DICOM SEG and the reports.
        algorithm_name: written into DICOM SEG and the reports (the bundle's model name).
        algorithm_version: likewise (the bundle's version).
        weights: how the reports name the weights (:func:`pipeline.models.weights_names`).
        flip_tta: whether the predictions averaged mirrored inputs; recorded in the reports.
        overlay_window: intensity window of the overlays, e.g. the CT lung window; ``None``: 1st-99th percentile.
        structures: what the label values of the masks stand for; default the one structure of value 1 that
            ``segment`` describes.
    """

    output_dir: Path
    segment: SegmentDescription
    algorithm_name: str = "pipeline"
    algorithm_version: str = "0"
    weights: str | list[str] | None = None
    flip_tta: bool = False
    overlay_window: Sequence[float] | None = None
    structures: Sequence[Structure] | None = None

    def __post_init__(self) -> None:
        self.structures = structures_from_config(self.structures, self.segment)

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
        """Write a segmented series' ``seg.dcm``, ``labels.nii.gz``, ``overlay.png`` and ``report.json``.

        A source that highdicom cannot reference (no FrameOfReferenceUID, say) gets every output but ``seg.dcm``;
        the report says why (``seg_missing``).

        Args:
            series: the series (its label, UIDs and files).
            volume: its pixels and geometry.
            mask: (N, H, W) uint8 mask, cleaned.
            measurements: the runner's measurements, with its stage ``timings``.

        Returns:
            The report (also written to ``report.json``).
        """
        timings = measurements.pop("timings")
        folder = self.output_dir / series.study_label / series.label
        folder.mkdir(parents=True, exist_ok=True)
        tick = time.perf_counter()
        outputs, warnings = ["seg.dcm", "labels.nii.gz", "overlay.png", "report.json"], list(volume.warnings)
        seg_missing = None
        try:
            write_dicom_seg(
                mask,
                volume.datasets,
                folder / "seg.dcm",
                segment_label=self.segment.label,
                segmented_property_category=tuple(self.segment.category),
                segmented_property_type=tuple(self.segment.property_type),
                display_color=self.segment.color,
                algorithm_name=self.algorithm_name,
                algorithm_version=self.algorithm_version,
            )
        except MemoryError:
            raise
        except Exception as e:  # sources highdicom refuses: the other outputs do not need what they lack
            seg_missing = (
                f"no DICOM SEG: the source series cannot be referenced ({safe_error_text(e, series.files[0])})"
            )
            outputs.remove("seg.dcm")
            warnings.append(seg_missing)
            logger.warning("%s: %s", series.label, seg_missing)
        timings["write_seg_s"] = time.perf_counter() - tick
        tick = time.perf_counter()
        write_label_nifti(mask, volume.affine, folder / "labels.nii.gz")
        timings["write_nifti_s"] = time.perf_counter() - tick
        tick = time.perf_counter()
        write_overlay_montage(volume.array, mask, folder / "overlay.png", window=self.overlay_window)
        timings["write_overlay_s"] = time.perf_counter() - tick
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
        logger.info(
            "%s: %d slices %dx%d, spacing %.2f x %.2f x %.2f mm: %s %.1f mL (%.1f mL before post-processing); "
            "%.2f s (model %.2f s) -> %s",
            series.label,
            volume.num_slices,
            *volume.array.shape[1:],
            *volume.spacing,
            self.segment.label.lower(),
            measurements["segmented_volume_ml"],
            measurements["volume_before_postprocessing_ml"],
            timings["total_s"],
            timings["model_forward_s"],
            folder.relative_to(self.output_dir).as_posix(),
        )
        return report

    def write_image(self, name: str, image: torch.Tensor, pred: torch.Tensor) -> dict[str, Any]:
        """Write a 2D image's mask (0/255 PNG at the image's own size) and its overlay.

        Args:
            name: the output name (the input's file name without its suffix).
            image: the (C, H, W) image as loaded; several channels are averaged for the overlay.
            pred: the (1, H, W) mask at the image's size.

        Returns:
            ``{"area_px", "fraction", "outputs"}``: the foreground pixels, their share, and the files (relative to
            ``output_dir``).
        """
        folder = self.output_dir / "images"
        mask = pred[0].numpy().astype(np.uint8)
        mask_path = write_mask_png(mask, folder / f"{name}_mask.png")
        display = image.numpy().mean(axis=0) if image.shape[0] > 1 else image.numpy()[0]
        overlay_path = write_overlay_png(display, mask, folder / f"{name}_overlay.png")
        area = int(mask.sum())
        return {
            "area_px": area,
            "fraction": round(area / mask.size, 6),
            "outputs": [p.relative_to(self.output_dir).as_posix() for p in (mask_path, overlay_path)],
        }

    def write_summary(self, summary: dict[str, Any]) -> Path:
        """Write the run's ``summary.json`` (every input's outcome), with the ``model`` record first."""
        return write_json({"model": self.model, **summary}, self.output_dir / "summary.json")
