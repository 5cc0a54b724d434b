"""Checkpoints that survive a crash: MONAI's ``CheckpointSaver`` with every file written atomically.

MONAI's ``CheckpointSaver`` (through ignite's ``Checkpoint``) deletes the previous best ``model.pt`` before it writes
the new one, and writes it in place: a process killed in between leaves no model, or a truncated one. Here each file
is written to a temporary file in the same folder, flushed to disk and renamed over the old one, and a file is never
deleted when the next save replaces it under the same name. The folder always holds either the complete previous file
or the complete new one.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ignite.engine import Engine
from ignite.handlers import DiskSaver
from monai.handlers import CheckpointSaver

from pipeline.atomic import save_atomic
from pipeline.distributed import is_rank0
from pipeline.models.card import ModelCard

__all__ = ["AtomicCheckpointSaver", "AtomicDiskSaver"]


class AtomicDiskSaver(DiskSaver):
    """Ignite's ``DiskSaver`` writing through :func:`pipeline.atomic.save_atomic`, optionally always under one name.

    Args:
        dirname: the folder (created if missing).
        filename: a fixed file name for every save (``model.pt``), or ``None`` for ignite's generated names.
        on_saved: called with each file's path once it is complete (to write its model card).
    """

    def __init__(
        self,
        dirname: str | os.PathLike,
        filename: str | None = None,
        on_saved: Callable[[Path], None] | None = None,
    ) -> None:
        super().__init__(dirname=dirname, require_empty=False, atomic=True, create_dir=True)
        self.filename = filename
        self.on_saved = on_saved

    def __call__(self, checkpoint: Mapping, filename: str, metadata: Mapping | None = None) -> None:
        if not is_rank0():  # ignite's own DiskSaver saves on one process too
            return
        path = save_atomic(checkpoint, Path(self.dirname) / (self.filename or filename))
        if self.on_saved is not None:
            self.on_saved(path)

    def remove(self, filename: str) -> None:
        """Delete an older checkpoint; a no-op under a fixed name, which the next save replaces atomically."""
        if self.filename is None:
            super().remove(filename)


class AtomicCheckpointSaver(CheckpointSaver):
    """MONAI's ``CheckpointSaver`` whose final, best-metric and interval files are written atomically, with a card.

    The previous best ``model.pt`` stays on disk, complete, until the new one has been written in full. With a
    ``model_card``, every weights file saved gets its card beside it (``model.pt`` -> ``model.json``), written after
    the weights, with the epoch and validation metrics of the moment.

    Args:
        args: MONAI's ``CheckpointSaver`` arguments.
        model_card: what the run trains with (:class:`pipeline.models.card.ModelCard`); ``None`` writes no card.
        metrics_from: the engine whose ``state.metrics`` the card records (the validator); default: the engine the
            saver is attached to.
        kwargs: MONAI's ``CheckpointSaver`` keyword arguments.
    """

    def __init__(
        self, *args: Any, model_card: ModelCard | None = None, metrics_from: Engine | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.model_card = model_card
        self.metrics_from = metrics_from
        self._engine: Engine | None = None
        for checkpoint in (self._final_checkpoint, self._key_metric_checkpoint, self._interval_checkpoint):
            if checkpoint is not None:
                checkpoint.save_handler = AtomicDiskSaver(
                    self.save_dir, checkpoint.save_handler.filename, on_saved=self._write_card
                )

    def attach(self, engine: Engine) -> None:
        self._engine = engine
        super().attach(engine)

    def _write_card(self, weights: Path) -> None:
        if self.model_card is None:
            return
        engine = self.metrics_from or self._engine
        state = engine.state if engine is not None else None
        best = getattr(state, "best_metric", None)
        self.model_card.write(
            weights,
            epoch=getattr(self._engine.state, "epoch", None) if self._engine is not None else None,
            metrics=getattr(state, "metrics", None),
            best_metric=None if best is None or best == -1 else float(best),
        )

    def state_dict(self) -> dict:
        """The best-metric record (ignite's ``(score, file)`` list): the inverse of MONAI's ``load_state_dict``."""
        return dict(self._key_metric_checkpoint.state_dict()) if self._key_metric_checkpoint is not None else {}
