"""Ignite handlers that MONAI does not provide: per-epoch reporting and named learning-rate schedules."""

from pipeline.handlers.lr_schedule import LR_SCHEDULES, EpochLrSchedule, create_lr_scheduler
from pipeline.handlers.training_report import TrainingReport

__all__ = ["LR_SCHEDULES", "EpochLrSchedule", "TrainingReport", "create_lr_scheduler"]
