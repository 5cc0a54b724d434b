"""Ignite handlers MONAI lacks: training and evaluation reports, named LR schedules, honest HD95, NaN stop, atomic
checkpoints, resumable training state, learning curves, validation pictures for TensorBoard, MLflow extras, and
amounts of training in epochs, samples or steps."""

from pipeline.handlers.amount import Amount, validation_rounds
from pipeline.handlers.checkpoint import AtomicCheckpointSaver, AtomicDiskSaver, save_atomic
from pipeline.handlers.curves import write_curves
from pipeline.handlers.evaluation_report import EvaluationReport
from pipeline.handlers.hausdorff import HD95Handler, HD95Metric
from pipeline.handlers.lr_schedule import LR_SCHEDULES, LrSchedule, WarmupCosineLR, create_lr_scheduler
from pipeline.handlers.nan_guard import NonFiniteLossError, StopOnNonFiniteLoss
from pipeline.handlers.resume import RandomStates, TrainingState
from pipeline.handlers.tracking import TrackingExtras
from pipeline.handlers.training_report import TrainingReport, trivial_baselines
from pipeline.handlers.validation_images import ValidationImages

__all__ = [
    "LR_SCHEDULES",
    "Amount",
    "AtomicCheckpointSaver",
    "AtomicDiskSaver",
    "EvaluationReport",
    "HD95Handler",
    "HD95Metric",
    "LrSchedule",
    "NonFiniteLossError",
    "RandomStates",
    "StopOnNonFiniteLoss",
    "TrackingExtras",
    "TrainingReport",
    "TrainingState",
    "ValidationImages",
    "WarmupCosineLR",
    "create_lr_scheduler",
    "save_atomic",
    "trivial_baselines",
    "validation_rounds",
    "write_curves",
]
