"""Resumable training: everything a run needs to continue, saved after every epoch and loaded with ``--resume true``.

After each epoch (after validation, early stopping, the best-model checkpoint and the report) the run folder's
``checkpoint.pt`` is replaced atomically with the network, optimizer and LR scheduler, the trainer's epoch and
iteration, the early-stopping counter and best score, the best-model saver's record of the best metric, the report's
history, and every random state the next epoch draws from: torch, NumPy and Python's global generators and each
random transform's own generator. A run continued from it repeats, on the same machine and settings, what the
uninterrupted run would have done (the tests compare the weights bit for bit on CPU).

Loading uses MONAI's ``CheckpointLoader`` (``weights_only=True``, the trainer's ``max_epochs`` kept from the command
line, so ``--epochs`` can extend a run).
"""

from __future__ import annotations

import logging
import os
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.handlers import CheckpointLoader, EarlyStopHandler
from monai.transforms import Compose, Randomizable

from pipeline.atomic import save_atomic
from pipeline.bundle import flag
from pipeline.distributed import is_rank0, unwrap

__all__ = ["CHECKPOINT_NAME", "RandomStates", "TrainingState"]

logger = logging.getLogger("pipeline.training")

CHECKPOINT_NAME = "checkpoint.pt"
"""The training state in a run folder; ``models/`` holds the weights users load."""


def _numpy_state(state: tuple) -> dict[str, Any]:
    """NumPy's ``(name, keys, pos, has_gauss, gauss)`` as tensors and numbers, which ``weights_only`` loading allows."""
    name, keys, pos, has_gauss, gauss = state
    return {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
            "gauss": float(gauss)}  # fmt: skip


def _numpy_tuple(state: dict[str, Any]) -> tuple:
    keys = state["keys"].numpy().astype(np.uint32)
    return state["name"], keys, state["pos"], state["has_gauss"], state["gauss"]


def _randomizables(transforms: Compose) -> Iterator[Randomizable]:
    """Every random transform of ``transforms``, and the random array transforms a dictionary transform wraps."""
    seen: set[int] = set()
    for transform in transforms.flatten().transforms:
        for candidate in (transform, *vars(transform).values()):
            if isinstance(candidate, Randomizable) and id(candidate) not in seen:
                seen.add(id(candidate))
                yield candidate


class RandomStates:
    """The random generators an epoch draws from, as a state dict.

    Args:
        transforms: the training transforms, whose random transforms each keep a generator of their own.
    """

    def __init__(self, transforms: Compose | None = None) -> None:
        self.transforms = list(_randomizables(transforms)) if transforms is not None else []

    def state_dict(self) -> dict[str, Any]:
        state = {
            "torch": torch.get_rng_state(),
            "numpy": _numpy_state(np.random.get_state()),
            "python": list(random.getstate()[1]),
            "python_gauss": random.getstate()[2],
            "transforms": [_numpy_state(t.R.get_state()) for t in self.transforms],
        }
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if len(state["transforms"]) != len(self.transforms):
            raise ValueError(
                f"the checkpoint holds {len(state['transforms'])} random transform states, the training transforms "
                f"have {len(self.transforms)}: resume with the augmentation settings of the interrupted run"
            )
        torch.set_rng_state(state["torch"])
        np.random.set_state(_numpy_tuple(state["numpy"]))
        random.setstate((3, tuple(state["python"]), state["python_gauss"]))
        for transform, transform_state in zip(self.transforms, state["transforms"], strict=True):
            transform.R.set_state(_numpy_tuple(transform_state))
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


class _EarlyStopState:
    """MONAI's ``EarlyStopHandler`` builds ignite's ``EarlyStopping`` (which has the state) only in ``set_trainer``."""

    def __init__(self, handler: EarlyStopHandler) -> None:
        self.handler = handler

    def state_dict(self) -> dict[str, Any]:
        return self.handler._handler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.handler._handler.load_state_dict(state)


class TrainingState:
    """Save the whole training state after every epoch to ``run_dir/checkpoint.pt``; with ``resume``, load it first.

    Attach it to the trainer before the other handlers: it loads when the run starts, ahead of the report (which then
    continues its history), and registers its saving then, behind every other end-of-epoch handler.

    Args:
        run_dir: the run folder.
        network: the network being trained.
        optimizer: its optimizer.
        lr_scheduler: the LR scheduler, if any.
        early_stop: MONAI's ``EarlyStopHandler`` on the validator, if any.
        best_saver: the validator's best-model saver (:class:`~pipeline.training.AtomicCheckpointSaver`), whose record
            of the best metric decides what the next epoch's model must beat.
        report: the :class:`~pipeline.training.TrainingReport`, whose history continues.
        transforms: the training transforms, for their random states.
        resume: load ``run_dir/checkpoint.pt`` when the run starts: a bool, or the ``--resume`` setting as typed
            (:func:`pipeline.bundle.flag`).
    """

    def __init__(
        self,
        run_dir: str | os.PathLike,
        network: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        lr_scheduler: Any = None,
        early_stop: EarlyStopHandler | None = None,
        best_saver: Any = None,
        report: Any = None,
        transforms: Compose | None = None,
        resume: bool | str = False,
    ) -> None:
        self.path = Path(run_dir) / CHECKPOINT_NAME
        self.resume = flag(resume, "resume")
        # the network itself, not DDP's wrapper: its keys are the ones MONAI's CheckpointLoader (which unwraps) loads
        self.objects: dict[str, Any] = {"network": unwrap(network), "optimizer": optimizer}
        optional = {
            "lr_scheduler": lr_scheduler,
            "early_stop": _EarlyStopState(early_stop) if early_stop is not None else None,
            "best_saver": best_saver,
            "report": report,
        }
        self.objects.update({k: v for k, v in optional.items() if v is not None})
        self.objects["random"] = RandomStates(transforms)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._started)

    def _started(self, engine: Engine) -> None:
        if not engine.has_event_handler(self._save, Events.EPOCH_COMPLETED):  # after every other epoch handler
            engine.add_event_handler(Events.EPOCH_COMPLETED, self._save)
        if self.resume:
            if not self.path.is_file():
                raise FileNotFoundError(f"cannot resume: {self.path} does not exist")
            requested = engine.state.max_epochs
            try:
                CheckpointLoader(str(self.path), {**self.objects, "trainer": engine}, map_location="cpu")(engine)
            except ValueError as e:  # MONAI's "Epoch count (3) in checkpoint is larger than ... max_epochs"
                done = re.search(r"Epoch count \((\d+)\)", str(e))
                if done is None:
                    raise
                raise ValueError(
                    f"--resume: the run in {self.path.parent} has trained {done.group(1)} epochs, more than --epochs "
                    f"{requested}: resume with --epochs above {done.group(1)} to train on, or use its weights as they "
                    "are"
                ) from None
            logger.info(
                "resuming %s after epoch %d of %d", self.path.parent, engine.state.epoch, engine.state.max_epochs
            )

    def _save(self, engine: Engine) -> None:
        if not is_rank0():  # with several processes, process 0 keeps the state for all (they are in step)
            return
        state = {name: obj.state_dict() for name, obj in self.objects.items()}
        state["trainer"] = engine.state_dict()
        save_atomic(state, self.path)
