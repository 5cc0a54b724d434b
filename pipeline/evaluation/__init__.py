"""Evaluation: HD95 and per-structure figures, the evaluation report of one checkpoint, and the comparison of several
bundles."""

from pipeline.evaluation.comparison_report import METRICS, holm, paired_test, write_report
from pipeline.evaluation.comparison_runs import PLAIN, RESERVED_ARGS, RunResult, default_variants, run_bundle
from pipeline.evaluation.evaluation_report import EvaluationReport
from pipeline.evaluation.hd95 import HD95Handler, HD95Metric
from pipeline.evaluation.overlap import DiceScore, IoUScore
from pipeline.evaluation.structure_metrics import StructureMetricHandler, metric_suffix
from pipeline.evaluation.volume_dice import VolumeDice

__all__ = [
    "METRICS",
    "PLAIN",
    "RESERVED_ARGS",
    "DiceScore",
    "EvaluationReport",
    "HD95Handler",
    "HD95Metric",
    "IoUScore",
    "RunResult",
    "StructureMetricHandler",
    "VolumeDice",
    "default_variants",
    "holm",
    "metric_suffix",
    "paired_test",
    "run_bundle",
    "write_report",
]
