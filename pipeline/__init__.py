"""2D medical image segmentation on MONAI: transforms, networks, dataset intake and bundle helpers.

Importing ``pipeline`` imports its subpackages, so that a bundle config's ``"$import pipeline"`` makes
``pipeline.data``, ``pipeline.io`` and the others available to its expressions.
"""

__version__ = "0.1.0"

from pipeline import (
    bundle,
    data,
    distributed,
    errors,
    export,
    handlers,
    inference,
    inferers,
    io,
    model_card,
    networks,
    outputs,
    runs,
    transforms,
)
from pipeline.segmenter import Segmenter

__all__ = [
    "Segmenter",
    "__version__",
    "bundle",
    "data",
    "distributed",
    "errors",
    "export",
    "handlers",
    "inference",
    "inferers",
    "io",
    "model_card",
    "networks",
    "outputs",
    "runs",
    "transforms",
]
