"""Where the training set's preprocessed slices are kept: in memory (``CacheDataset``) or on disk (PersistentDataset).

The deterministic part of training preprocessing (load, window, resize, the compact cast) runs once per slice; its
result is kept, and the random augmentation runs per draw. In memory is fastest, and takes about the item's tensors plus
MONAI's metadata (150 KiB per slice measured: ``docs/evidence/training-memory.md``). A training set that does not fit
goes to disk instead: one ``.pt`` file per slice under ``cache_dir``, reused by the next run of the same settings on
the same files (the file name hashes each item's paths, sizes and modification times; the folder name hashes the
settings that shape the cached tensors), and read back with ``torch.load(weights_only=True)``. ``cache="auto"``
chooses by the estimate against half of the memory available when the run starts. :func:`training_transforms` puts
the preprocessing in that order: what is cached, then what runs on every draw.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence, Sized
from pathlib import Path
from typing import Any

import torch
from monai.data import CacheDataset, Dataset, PersistentDataset
from monai.data.utils import pickle_hashing
from monai.transforms import Compose
from monai.utils import get_equivalent_dtype

from pipeline.bundle import flag
from pipeline.version import __version__

__all__ = [
    "CACHE_FORMAT",
    "CACHE_MODES",
    "available_memory_bytes",
    "cached_dataset",
    "choose_cache",
    "estimated_cache_bytes",
    "training_transforms",
]

CACHE_FORMAT = 2
"""What the same file and settings give when loaded and preprocessed, as a number hashed into the disk cache's folder
name: raised when reading or preprocessing changes, so that a run never reads tensors the older code cached (2: a
palette image is read as its colours, not its palette indices)."""

logger = logging.getLogger("pipeline.intake")

CACHE_MODES = ("auto", "memory", "disk")
#: MONAI's per-item metadata in a cache (affine, applied operations as Python objects), measured at 256 x 256.
METADATA_BYTES_PER_ITEM = 150 * 1024


def estimated_cache_bytes(
    count: int, spatial_size: Sequence[int], in_channels: int, bytes_per_value: int = 2, label_channels: int = 1
) -> int:
    """Memory a cache of ``count`` training items takes: image and target at the training size, plus metadata.

    Args:
        count: items.
        spatial_size: (H, W) the items are resized to.
        in_channels: image channels.
        bytes_per_value: the cached type's size (2: float16).
        label_channels: the target's channels: 1 for one structure, ``K + 1`` one-hot channels for ``K`` of them (the
            bundles' ``@out_channels``), each cached like the image.
    """
    pixels = int(spatial_size[0]) * int(spatial_size[1])
    return count * (pixels * (in_channels + label_channels) * bytes_per_value + METADATA_BYTES_PER_ITEM)


def available_memory_bytes() -> int | None:
    """``MemAvailable`` from ``/proc/meminfo`` (Linux); ``None`` where it cannot be read."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def choose_cache(
    cache: str,
    count: int | Sized,
    spatial_size: Sequence[int] = (192, 192),
    in_channels: int = 1,
    memory_budget: int | None = None,
    label_channels: int = 1,
) -> str:
    """``"memory"`` or ``"disk"``: ``cache`` itself, or for ``"auto"`` the choice by size (logged with its figures).

    Args:
        cache: ``"auto"``, ``"memory"`` or ``"disk"``.
        count: the number of training items, or the items.
        spatial_size: the training size, for the estimate.
        in_channels: image channels, for the estimate.
        memory_budget: bytes the memory cache may take; default half of :func:`available_memory_bytes`.
        label_channels: the target's channels, for the estimate (:func:`estimated_cache_bytes`).

    Raises:
        ValueError: an unknown ``cache``.
    """
    if cache not in CACHE_MODES:
        raise ValueError(f"--cache {cache!r}: use one of {', '.join(CACHE_MODES)}")
    if cache != "auto":
        return cache
    count = count if isinstance(count, int) else len(count)
    processes = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))  # torchrun: each process caches every item
    needed = estimated_cache_bytes(count, spatial_size, in_channels, label_channels=label_channels) * processes
    available = available_memory_bytes()
    budget = memory_budget if memory_budget is not None else (available // 2 if available else None)
    chosen = "disk" if budget is not None and needed > budget else "memory"
    logger.info(
        "training cache: about %.2f GiB for %d slices of %d + %d channel(s) x %d process(es) on this machine, %s GiB "
        "allowed (half the available memory): %s",
        needed / 2**30,
        count,
        in_channels,
        label_channels,
        processes,
        f"{budget / 2**30:.2f}" if budget is not None else "unknown",
        "on disk" if chosen == "disk" else "in memory",
    )
    return chosen


def _item_hash(item: Mapping[str, Any]) -> bytes:
    """The item with each file's size and modification time, hashed: a replaced file is not served from the cache."""
    stamped = {}
    for key, value in item.items():
        if isinstance(value, str) and os.path.isfile(value):
            stat = os.stat(value)
            value = (value, stat.st_size, stat.st_mtime_ns)
        stamped[key] = value
    return pickle_hashing(stamped)


def cached_dataset(
    data: Sequence[Mapping[str, Any]],
    transform: Callable,
    cache: str = "auto",
    cache_dir: str | os.PathLike | None = None,
    settings: Mapping[str, Any] | None = None,
    cached_dtype: object = None,
    spatial_size: Sequence[int] = (192, 192),
    in_channels: int = 1,
    num_workers: int | None = 1,
    progress: bool = False,
    memory_budget: int | None = None,
    label_channels: int = 1,
) -> Dataset:
    """The training dataset, its deterministic preprocessing cached in memory or on disk.

    Args:
        data: the items (``{"image": path, "label": path, ...}``).
        transform: the whole training preprocessing; everything before its first random transform is cached.
        cache: ``"memory"`` (``CacheDataset``), ``"disk"`` (``PersistentDataset`` under ``cache_dir``) or ``"auto"``
            (:func:`choose_cache`: disk when :func:`estimated_cache_bytes`, times the processes ``torchrun`` started on
            this machine, each caching the whole set, exceeds ``memory_budget``).
        cache_dir: the disk cache's folder; a subfolder per ``settings`` is used.
        settings: what shapes the cached tensors (training size, window, channels...); hashed into the subfolder name
            with ``cached_dtype``, the package version and :data:`CACHE_FORMAT`, so that other settings, or tensors
            the code before a change cached, are never read.
        cached_dtype: the type the cache holds its tensors in (``train#cache_types#dtype``: ``"float16"`` or
            ``torch.float16``, the same cache).
        spatial_size: the training size, for the estimate.
        in_channels: image channels, for the estimate.
        num_workers: threads that fill the memory cache.
        progress: show the memory cache's progress bar.
        memory_budget: bytes the memory cache may take; default half of :func:`available_memory_bytes`.
        label_channels: the target's channels, for the estimate (``K + 1`` one-hot channels for ``K`` structures).

    Returns:
        A ``CacheDataset`` or a ``PersistentDataset``.

    Raises:
        ValueError: an unknown ``cache``, or ``"disk"``/``"auto"`` choosing disk without a ``cache_dir``.
    """
    cache = choose_cache(cache, len(data), spatial_size, in_channels, memory_budget, label_channels)
    if cache == "memory":
        return CacheDataset(data, transform, cache_rate=1.0, num_workers=num_workers, progress=progress)
    if cache_dir is None:
        raise ValueError("--cache disk needs a cache folder (--cache_dir)")
    dtype = get_equivalent_dtype(cached_dtype, torch.Tensor)  # "float16" and torch.float16 name one cache
    settings = {**(settings or {}), "cached_dtype": str(dtype), "pipeline": __version__, "format": CACHE_FORMAT}
    key = json.dumps({k: settings[k] for k in sorted(settings)}, default=str, sort_keys=True)
    folder = Path(cache_dir) / hashlib.sha1(key.encode()).hexdigest()[:12]
    folder.mkdir(parents=True, exist_ok=True)
    logger.info("training cache on disk in %s (reused by runs with the same settings and files)", folder)
    return PersistentDataset(data, transform, cache_dir=folder, hash_func=_item_hash, weights_only=True)


def training_transforms(
    prepare: Sequence[Callable],
    resize: Callable,
    cache_types: Callable,
    after_cache: Callable,
    augmentation: Sequence[Callable],
    extra_augmentation: Sequence[Callable] = (),
    use_extra_augmentation: bool | str = True,
    colour_augmentation: Sequence[Callable] = (),
    use_colour_augmentation: bool | str = False,
    to_device: Callable | None = None,
    cache_on_device: bool = False,
    cache: str = "memory",
) -> Compose:
    """The training preprocessing in cache order: what is cached first, then what runs on every draw.

    ``prepare`` (read, scale, binarise) -> ``resize`` -> ``cache_types`` (the compact type the cache keeps) ->
    ``to_device`` (only with a memory cache: the cached slices then live on the GPU) -> ``after_cache`` (back to
    float32; the cache stops at it, :class:`pipeline.transforms.AfterCache`) -> ``augmentation`` -> with
    ``use_colour_augmentation``, ``colour_augmentation`` -> with ``use_extra_augmentation``, ``extra_augmentation``.

    Args:
        prepare: the transforms that read and prepare an item.
        resize: to the training size.
        cache_types: the cache's compact types.
        after_cache: the cache boundary.
        augmentation: the random transforms every recipe uses (flips, contrast).
        extra_augmentation: the default recipe's others (rotation, zoom, noise, blur...).
        use_extra_augmentation: the ``--extra_augmentation`` setting (:func:`pipeline.bundle.flag`).
        colour_augmentation: colour and illumination changes for colour images (per-channel gain and offset, a
            smooth illumination field).
        use_colour_augmentation: the ``--colour_augmentation`` setting (:func:`pipeline.bundle.flag`).
        to_device: moves the cached items to the device.
        cache_on_device: use ``to_device`` (``--cache_on_device``, :func:`pipeline.bundle.gpu_flag`); otherwise the
            cached items stay on the host.
        cache: the cache's kind (:func:`choose_cache`): a disk cache always stays on the host.
    """
    on_device = [to_device] if to_device is not None and cache_on_device and cache == "memory" else []
    extra = list(extra_augmentation) if flag(use_extra_augmentation, "extra_augmentation") else []
    colour = list(colour_augmentation) if flag(use_colour_augmentation, "colour_augmentation") else []
    return Compose([*prepare, resize, cache_types, *on_device, after_cache, *augmentation, *colour, *extra])
