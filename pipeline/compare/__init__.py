"""Compare bundles on one dataset and split: train and evaluate each, then write a report folder."""

from pipeline.compare.report import METRICS, holm, paired_test, write_report
from pipeline.compare.runs import PLAIN, RESERVED_ARGS, RunResult, default_variants, run_bundle

__all__ = [
    "METRICS",
    "PLAIN",
    "RESERVED_ARGS",
    "RunResult",
    "default_variants",
    "holm",
    "paired_test",
    "run_bundle",
    "write_report",
]
