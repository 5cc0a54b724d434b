"""Ignite handlers MONAI lacks: training and evaluation reports, named LR schedules, honest HD95, NaN stop."""

from pipeline.handlers.evaluation_report import EvaluationReport
from pipeline.handlers.hausdorff import HD95Handler, HD95Metric
from pipeline.handlers.lr_schedule import LR_SCHEDULES, EpochLrSchedule, create_lr_scheduler
from pipeline.handlers.nan_guard import NonFiniteLossError, StopOnNonFiniteLoss
from pipeline.handlers.training_report import TrainingReport

__all__ = [
    "LR_SCHEDULES",
    "EpochLrSchedule",
    "EvaluationReport",
    "HD95Handler",
    "HD95Metric",
    "NonFiniteLossError",
    "StopOnNonFiniteLoss",
    "TrainingReport",
    "create_lr_scheduler",
]
