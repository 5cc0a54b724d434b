"""Evaluation: the HD95 metric, the evaluation report of one checkpoint, and the comparison of several bundles."""

from pipeline.evaluation.comparison_report import METRICS, holm, paired_test, write_report
from pipeline.evaluation.comparison_runs import PLAIN, RESERVED_ARGS, RunResult, default_variants, run_bundle
from pipeline.evaluation.evaluation_report import EvaluationReport
from pipeline.evaluation.hd95 import HD95Handler, HD95Metric

__all__ = [
    "METRICS",
    "PLAIN",
    "RESERVED_ARGS",
    "EvaluationReport",
    "HD95Handler",
    "HD95Metric",
    "RunResult",
    "default_variants",
    "holm",
    "paired_test",
    "run_bundle",
    "write_report",
]
