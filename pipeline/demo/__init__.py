"""The embedded demo data: a synthetic chest phantom, the 2D slices the README's command trains on, and a DICOM study.

The phantom labels three structures (:data:`LABELS`: right lung, left lung, heart). Nothing here is needed to train
on real data; the bundles generate the demo slices on first use (:func:`ensure_demo_dataset`), and ``pipeline-demo``
writes either on request. The demo study records the phantom's true volume of each structure
(:func:`demo_study_truth`).
"""

from pipeline.demo.phantom import LABELS, ChestAnatomy, scan, scan_circle
from pipeline.demo.slices import (
    demo_dataset_dir,
    ensure_demo_dataset,
    ensure_if_demo,
    is_complete_demo_dataset,
    synthesize_ct_slice,
    write_demo_dataset,
)
from pipeline.demo.study import (
    demo_study_truth,
    ensure_demo_study,
    is_complete_demo_study,
    synthesize_ct_volume,
    write_ct_series,
    write_demo_study,
)

__all__ = [
    "LABELS",
    "ChestAnatomy",
    "demo_dataset_dir",
    "demo_study_truth",
    "ensure_demo_dataset",
    "ensure_demo_study",
    "ensure_if_demo",
    "is_complete_demo_dataset",
    "is_complete_demo_study",
    "scan",
    "scan_circle",
    "synthesize_ct_slice",
    "synthesize_ct_volume",
    "write_ct_series",
    "write_demo_dataset",
    "write_demo_study",
]
