"""Training on several processes with PyTorch's own engine (``torchrun`` + DDP), as MONAI's model-zoo bundles do.

``bundles/common/multi_gpu_train.json`` is an overlay for any bundle's ``train.json``::

    torchrun --nproc_per_node=2 -m monai.bundle run training \\
        --config_file "['bundles/cenet/train.json','bundles/common/multi_gpu_train.json']"

It sets ``distributed`` (which makes :func:`start` open the process group: NCCL on GPUs, gloo on the CPU), gives each
process its GPU (``LOCAL_RANK``; ``--device cpu`` keeps every process on the CPU), wraps the network in
``DistributedDataParallel`` and splits the training and validation sets with ``DistributedSampler``. Validation metrics
are gathered from every process (MONAI's metric handlers do this), so each process sees the same numbers and takes the
same early-stopping and learning-rate decisions. Files are written once: the run folder is chosen by process 0 and
handed to the others (:func:`from_rank0`), and the handlers that write (reports, checkpoints, TensorBoard, MLflow,
pictures) are ``"_disabled_": "@is_not_rank0"`` in ``train.json``, so that the other processes never build them.
``--batch_size`` is per process.
"""

from __future__ import annotations

import ctypes
import logging
import os
from collections.abc import Callable
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import nn

from pipeline.bundle import flag

__all__ = [
    "all_gather",
    "device",
    "finish",
    "from_rank0",
    "is_not_rank0",
    "is_rank0",
    "shard",
    "start",
    "unwrap",
    "world_size",
    "wrap",
]

logger = logging.getLogger(__name__)
T = TypeVar("T")


def _active() -> bool:
    return dist.is_available() and dist.is_initialized()


def is_rank0() -> bool:
    """Whether this process writes files: process 0, or the only one."""
    return not _active() or dist.get_rank() == 0


def is_not_rank0() -> bool:
    """Whether this is a process other than 0 of a ``torchrun``: the bundles disable their writing handlers there."""
    return not is_rank0()


def world_size() -> int:
    """The number of training processes (1 without a process group)."""
    return dist.get_world_size() if _active() else 1


def device() -> torch.device:
    """This process's GPU (``cuda:<LOCAL_RANK>``), or the CPU where there is none."""
    if torch.cuda.is_available():
        return torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}")
    return torch.device("cpu")


def start(enabled: object, run_device: str | torch.device | None = None) -> bool:
    """Open the process group when ``enabled`` (the ``distributed`` setting); a no-op otherwise.

    Args:
        enabled: the bundle's ``distributed`` setting (see :func:`pipeline.bundle.flag`).
        run_device: the run's device: NCCL for CUDA, gloo for the CPU.

    Returns:
        Whether training is distributed.

    Raises:
        RuntimeError: ``distributed`` without ``torchrun`` (no ``RANK``/``WORLD_SIZE`` in the environment).
    """
    if not flag(enabled, "distributed"):
        return False
    if _active():
        return True
    if "WORLD_SIZE" not in os.environ:
        raise RuntimeError(
            "the multi_gpu overlays need torchrun: torchrun --nproc_per_node=N -m monai.bundle run training "
            "--config_file \"['bundles/<bundle>/train.json','bundles/common/multi_gpu_train.json']\" (inference: "
            "run inference with inference.json and multi_gpu_inference.json)"
        )
    cuda = torch.device(run_device or device()).type == "cuda"
    if cuda:
        torch.cuda.set_device(torch.device(run_device or device()))
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    logger.info("process %d of %d (%s)", dist.get_rank(), dist.get_world_size(), "nccl" if cuda else "gloo")
    return True


def finish() -> None:
    """Close the process group, if one is open, once every process has come this far.

    The last barrier's work is kept for the life of the process, on purpose. A gloo worker thread lets go of a finished
    collective a moment after the caller sees it finish. If the interpreter has begun to shut down when that thread
    frees a tensor Python made (a gathered metric), the thread cannot take the GIL and the process aborts ("terminate
    called without an active exception", SIGABRT, torchrun exit 1; PyTorch 2.13, on a loaded machine). A barrier's work
    holds every collective still queued or in progress when it is issued, so with that work never freed no worker
    thread frees a Python tensor after this point. Measured by ``tests/benchmarks/probe_distributed_exit.py``.
    """
    if _active():
        work = dist.barrier(async_op=True)
        work.wait()
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(work))  # never freed (see above); the process is ending
        dist.destroy_process_group()


def from_rank0(make: Callable[[], T]) -> T:
    """``make()`` on process 0, its result handed to every process (a run folder must be chosen once)."""
    if not _active():
        return make()
    value = [make() if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(value, src=0)
    return value[0]


def shard() -> tuple[int, int] | None:
    """``(rank, number of processes)`` when a process group is open, to split inference inputs between processes;
    ``None`` otherwise."""
    return (dist.get_rank(), dist.get_world_size()) if _active() else None


def all_gather(value: T) -> list[T]:
    """``value`` from every process, in rank order (any picklable object); ``[value]`` without a process group."""
    if not _active():
        return [value]
    gathered: list[T | None] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered  # type: ignore[return-value]


def wrap(network: nn.Module, run_device: str | torch.device) -> nn.Module:
    """``network`` in ``DistributedDataParallel`` (on its GPU, or on the CPU); unchanged without a process group."""
    if not _active():
        return network
    run_device = torch.device(run_device)
    ids = [run_device] if run_device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(network, device_ids=ids, output_device=ids[0] if ids else None)


def unwrap(network: nn.Module) -> nn.Module:
    """The network inside ``DistributedDataParallel`` or ``DataParallel``; any other module as it is. Its state dict
    has the keys that inference and MONAI's ``CheckpointLoader`` (which unwraps before loading) expect."""
    return network.module if isinstance(network, nn.parallel.DistributedDataParallel | nn.DataParallel) else network
