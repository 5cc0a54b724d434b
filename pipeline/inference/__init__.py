"""Inference: find the inputs (2D images, DICOM studies), predict them in batches with ensembles and flip TTA, and
hand the results to the writers; :class:`Segmenter` does the same for a Python script."""

from pipeline.inference.autocast import AutocastSimpleInferer, AutocastSlidingWindowInferer, native_bf16
from pipeline.inference.ensemble import FLIPS, EnsembleInferer
from pipeline.inference.input_fit import EXIT_FLAGGED, InputFit, InputFitError
from pipeline.inference.inputs import PROJECTION_MODALITIES, ImageInput, InferenceInputs, find_inputs
from pipeline.inference.predictor import NonFiniteOutputError, SlicePredictor
from pipeline.inference.runner import InferenceError, InferenceRunner, exit_status
from pipeline.inference.segmenter import Segmenter, SeriesResult

__all__ = [
    "EXIT_FLAGGED",
    "FLIPS",
    "PROJECTION_MODALITIES",
    "AutocastSimpleInferer",
    "AutocastSlidingWindowInferer",
    "EnsembleInferer",
    "ImageInput",
    "InferenceError",
    "InferenceInputs",
    "InferenceRunner",
    "InputFit",
    "InputFitError",
    "NonFiniteOutputError",
    "Segmenter",
    "SeriesResult",
    "SlicePredictor",
    "exit_status",
    "find_inputs",
    "native_bf16",
]
