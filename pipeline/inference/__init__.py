"""Inference: 2D images and DICOM studies in; DICOM SEG, NIfTI, PNG overlays and JSON reports out."""

from pipeline.inference.predictor import SlicePredictor
from pipeline.inference.runner import InferenceError, InferenceRunner, SegmentDescription
from pipeline.inference.sources import PROJECTION_MODALITIES, ImageInput, InferenceInputs, find_inputs

__all__ = [
    "PROJECTION_MODALITIES",
    "ImageInput",
    "InferenceError",
    "InferenceInputs",
    "InferenceRunner",
    "SegmentDescription",
    "SlicePredictor",
    "find_inputs",
]
