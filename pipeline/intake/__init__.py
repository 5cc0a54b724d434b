"""What enters training: datalists, splits and folds, the kind of images (modality, channels), dataset recipes, the
pre-flight check and the training cache."""

from pipeline.intake.cache import CACHE_MODES, cached_dataset, choose_cache, estimated_cache_bytes, training_transforms
from pipeline.intake.datalist import (
    DATALIST_NAMES,
    IMAGE_SUFFIXES,
    assign_folds,
    check_bundle_overrides,
    dataset_segment,
    dataset_structures,
    find_folder_pairs,
    load_datalist,
    select_split,
    split_datalist,
)
from pipeline.intake.dataset_recipes import RECIPES, Recipe, prepare_dataset
from pipeline.intake.image_kind import SAMPLE_SIZE, dataset_in_channels, dataset_modality, is_colour
from pipeline.intake.loader import ThreadDataLoader
from pipeline.intake.preflight import (
    DatasetCheckError,
    DatasetReport,
    Finding,
    ImageMoments,
    ImageStats,
    check_dataset,
    check_modality,
    inspect_dataset,
    preflight,
)
from pipeline.intake.volumes import expand_volumes, without_volumes

__all__ = [
    "CACHE_MODES",
    "DATALIST_NAMES",
    "IMAGE_SUFFIXES",
    "RECIPES",
    "SAMPLE_SIZE",
    "DatasetCheckError",
    "DatasetReport",
    "Finding",
    "ImageMoments",
    "ImageStats",
    "Recipe",
    "ThreadDataLoader",
    "assign_folds",
    "cached_dataset",
    "check_bundle_overrides",
    "check_dataset",
    "check_modality",
    "choose_cache",
    "dataset_in_channels",
    "dataset_modality",
    "dataset_segment",
    "dataset_structures",
    "estimated_cache_bytes",
    "expand_volumes",
    "find_folder_pairs",
    "inspect_dataset",
    "is_colour",
    "load_datalist",
    "preflight",
    "prepare_dataset",
    "select_split",
    "split_datalist",
    "training_transforms",
    "without_volumes",
]
