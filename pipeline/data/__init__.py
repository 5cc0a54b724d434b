"""Dataset intake: datalists, splits and folds, dataset recipes, the pre-flight check and the embedded demo data."""

from pipeline.data.cache import CACHE_MODES, cached_dataset, choose_cache, estimated_cache_bytes
from pipeline.data.datalist import (
    DATALIST_NAMES,
    IMAGE_SUFFIXES,
    assign_folds,
    check_bundle_overrides,
    dataset_segment,
    find_folder_pairs,
    load_datalist,
    split_datalist,
)
from pipeline.data.demo import ensure_demo_dataset, synthesize_ct_slice, write_demo_dataset
from pipeline.data.demo_dicom import (
    ensure_demo_study,
    is_complete_demo_study,
    synthesize_ct_volume,
    write_ct_series,
    write_demo_study,
)
from pipeline.data.loader import ThreadDataLoader
from pipeline.data.preflight import (
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
from pipeline.data.recipes import RECIPES, Recipe, prepare_dataset

__all__ = [
    "CACHE_MODES",
    "DATALIST_NAMES",
    "IMAGE_SUFFIXES",
    "RECIPES",
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
    "dataset_segment",
    "ensure_demo_dataset",
    "ensure_demo_study",
    "estimated_cache_bytes",
    "find_folder_pairs",
    "inspect_dataset",
    "is_complete_demo_study",
    "load_datalist",
    "preflight",
    "prepare_dataset",
    "split_datalist",
    "synthesize_ct_slice",
    "synthesize_ct_volume",
    "write_ct_series",
    "write_demo_dataset",
    "write_demo_study",
]
