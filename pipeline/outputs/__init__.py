"""What an inference run hands back: DICOM SEG, DICOM SR (the segments' volumes) and NIfTI label files, overlay
pictures, measurements and reports, and ``report.html``, the page that shows them all.

Every file is written atomically (:mod:`pipeline.atomic`). Nothing here logs patient attributes or folder names;
files are named by file name only.
"""

from __future__ import annotations

from pipeline.outputs.dicom_seg import NOT_FOR_CLINICAL_USE, read_dicom_seg, run_dciodvfy, write_dicom_seg
from pipeline.outputs.dicom_sr import read_measurement_report, segment_volumes, write_measurement_report
from pipeline.outputs.html_report import overlay_frames, write_html_report, write_overlay_frames
from pipeline.outputs.label_nifti import LPS_TO_RAS, write_label_nifti
from pipeline.outputs.measurements import mask_measurements
from pipeline.outputs.overlay import (
    display_window,
    montage,
    overlay_outline,
    to_uint8,
    write_image_png,
    write_label_png,
    write_mask_png,
    write_overlay_montage,
    write_overlay_png,
    write_side_by_side,
)
from pipeline.outputs.writers import InferenceWriter

__all__ = [
    "LPS_TO_RAS",
    "NOT_FOR_CLINICAL_USE",
    "InferenceWriter",
    "display_window",
    "mask_measurements",
    "montage",
    "overlay_frames",
    "overlay_outline",
    "read_dicom_seg",
    "read_measurement_report",
    "run_dciodvfy",
    "segment_volumes",
    "to_uint8",
    "write_dicom_seg",
    "write_html_report",
    "write_image_png",
    "write_label_nifti",
    "write_label_png",
    "write_mask_png",
    "write_measurement_report",
    "write_overlay_frames",
    "write_overlay_montage",
    "write_overlay_png",
    "write_side_by_side",
]
