"""Training: the Ignite handlers MONAI lacks (reports, named LR schedules, Dice fine-tuning, NaN stop, atomic
checkpoints, resumable state, learning curves, validation pictures, MLflow extras), amounts of training in epochs,
samples or steps, and run folders."""

from pipeline.training.amount import Amount, validation_rounds
from pipeline.training.checkpoint import AtomicCheckpointSaver, AtomicDiskSaver
from pipeline.training.curves import write_curves
from pipeline.training.fine_tuning import DiceFineTuning, schedule_epochs
from pipeline.training.loss import segmentation_loss
from pipeline.training.lr_schedule import (
    LR_SCHEDULES,
    LrSchedule,
    WarmupCosineLR,
    create_lr_scheduler,
    snapshot_interval,
)
from pipeline.training.nan_guard import NonFiniteLossError, StopOnNonFiniteLoss
from pipeline.training.resume import RandomStates, TrainingState
from pipeline.training.run_folders import (
    default_output_dir,
    latest_checkpoint,
    latest_link,
    new_run_dir,
    open_run_dir,
    point_latest,
    resume_run_dir,
    run_name,
    unlock_run_dir,
)
from pipeline.training.tracking import TrackingExtras, tracking_uri
from pipeline.training.training_report import TrainingReport, trivial_baselines
from pipeline.training.validation_images import ValidationImages

__all__ = [
    "LR_SCHEDULES",
    "Amount",
    "AtomicCheckpointSaver",
    "AtomicDiskSaver",
    "DiceFineTuning",
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
    "default_output_dir",
    "latest_checkpoint",
    "latest_link",
    "new_run_dir",
    "open_run_dir",
    "point_latest",
    "resume_run_dir",
    "run_name",
    "schedule_epochs",
    "segmentation_loss",
    "snapshot_interval",
    "tracking_uri",
    "trivial_baselines",
    "unlock_run_dir",
    "validation_rounds",
    "write_curves",
]
