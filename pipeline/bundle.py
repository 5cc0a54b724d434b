"""Helpers for the bundle configs: where the bundles are, and on/off settings given on the command line.

A bundle config's ``bundle_root`` is the folder that holds it. MONAI cannot tell a config where its own file is, so the
generated configs ask :func:`bundle_root`, which finds the bundle in :data:`BUNDLES_DIR`: the package data
``pipeline/bundles/`` of an installed wheel, or else the ``bundles/`` folder of the clone that ``pip install -e .``
installed from. ``pipeline-bundles`` prints where they are. A bundle copied elsewhere sets ``--bundle_root`` on the
command line instead, as any MONAI bundle does.

``python -m monai.bundle`` reads ``--flip_tta false`` as the string ``"false"``, which Python takes as true. The configs
read every on/off setting through :func:`flag`, which accepts what people type and refuses anything else.
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = [
    "BUNDLES_DIR",
    "IDS_FILE",
    "PACKAGED_BUNDLES_DIR",
    "amp_flag",
    "bundle_root",
    "bundles_are_packaged",
    "channels_last_flag",
    "check_device",
    "check_settings",
    "choose_recipe",
    "default_device",
    "engine_log",
    "flag",
    "gpu_flag",
    "place",
    "repository_bundles",
    "set_cudnn_benchmark",
    "terminal",
    "to_kwargs",
    "transform_list",
    "warn_unused",
]

_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")

PACKAGED_BUNDLES_DIR = Path(__file__).resolve().parent / "bundles"
"""Where a wheel installs the bundles: package data ``pipeline/bundles/`` (``setup.py`` maps the repository's
``bundles/`` there)."""

BUNDLES_DIR = PACKAGED_BUNDLES_DIR if PACKAGED_BUNDLES_DIR.is_dir() else Path(__file__).resolve().parents[1] / "bundles"
"""The bundles' folder: the installed package data, or in a clone (an editable install) the repository's ``bundles/``,
a sibling of the package folder."""

IDS_FILE = BUNDLES_DIR / "bundle_ids.yaml"
"""What every config id of the bundles means (``--help`` prints it)."""


def bundles_are_packaged() -> bool:
    """Whether the bundles are an installed wheel's package data rather than a clone's ``bundles/`` folder."""
    return BUNDLES_DIR == PACKAGED_BUNDLES_DIR


def bundle_root(name: str) -> str:
    """The folder of the repository's bundle ``name``.

    Args:
        name: the bundle's folder name under ``bundles/``, e.g. ``"cenet"``.

    Returns:
        The absolute path of ``bundles/<name>``, as a string (configs join it with ``+``).

    Raises:
        FileNotFoundError: when the package was not installed from a clone that holds ``bundles/<name>``; the message
            says to pass ``--bundle_root``.
    """
    root = BUNDLES_DIR / name
    if not root.is_dir():
        known = ", ".join(repository_bundles()) or "none"
        raise FileNotFoundError(
            f"bundle folder {root} does not exist: the installed pipeline has no '{name}' bundle (it has: {known}). "
            "Pass --bundle_root <folder of the bundle's configs>."
        )
    return str(root)


def repository_bundles() -> list[str]:
    """The names of the repository's bundles: the folders of ``bundles/`` that hold a bundle's source
    (``model.json``) and its generated ``inference.json`` (not ``common/``, the shared wiring).

    A model card names the bundle that trained it by one of these names; nothing else it says becomes a path.
    """
    if not BUNDLES_DIR.is_dir():
        return []
    return sorted(
        p.name for p in BUNDLES_DIR.iterdir() if (p / "model.json").is_file() and (p / "inference.json").is_file()
    )


def flag(value: object, name: str) -> bool:
    """An on/off setting as a bool, whether the config holds ``false`` or the command line gave ``"false"``.

    Args:
        value: a bool, 0 or 1, or a string ``true``/``false``, ``yes``/``no``, ``on``/``off``, ``1``/``0`` (any case).
        name: the setting, for the message.

    Raises:
        ValueError: for any other value, naming the setting and what it got.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError(f"--{name} must be true or false, got {value!r}.")


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_settings(
    spatial_size: Sequence[int] | None = None,
    batch_size: int | None = None,
    epochs: int | None = None,
    learning_rate: float | None = None,
    threshold: float | None = None,
    in_channels: int | None = None,
    out_channels: int | None = None,
    max_image_pixels: int | None = None,
    structures: Sequence[object] | None = None,
) -> None:
    """Refuse settings no run can use, with the override to fix, before anything is read or built from them.

    Args:
        spatial_size: (height, width) the network sees: two positive whole numbers.
        batch_size: at least 1.
        epochs: at least 1.
        learning_rate: positive.
        threshold: the probability that separates foreground from background, strictly between 0 and 1.
        in_channels: 1 (grey) or 3 (colour).
        out_channels: the network's output channels: 1 (sigmoid) for one structure, ``K + 1`` (softmax) for ``K``.
        max_image_pixels: positive.
        structures: what the run segments (``@structures``), which ``out_channels`` must fit.

    Raises:
        ValueError: naming the first setting that is wrong, what it got and what it needs.
    """
    problems = []
    if spatial_size is not None and not (
        isinstance(spatial_size, Sequence)
        and not isinstance(spatial_size, str)
        and len(spatial_size) == 2
        and all(_whole(v) and v > 0 for v in spatial_size)
    ):
        problems.append(f'--spatial_size must be two positive whole numbers, e.g. "[256,256]", got {spatial_size!r}')
    for name, value in (("batch_size", batch_size), ("epochs", epochs), ("max_image_pixels", max_image_pixels)):
        if value is not None and not (_whole(value) and value >= 1):
            problems.append(f"--{name} must be a whole number of at least 1, got {value!r}")
    if learning_rate is not None and not (_number(learning_rate) and learning_rate > 0):
        problems.append(f"--learning_rate must be a positive number, got {learning_rate!r}")
    if threshold is not None and not (_number(threshold) and 0 < threshold < 1):
        problems.append(f"--threshold must be a probability strictly between 0 and 1, got {threshold!r}")
    if in_channels is not None and in_channels not in (1, 3):
        problems.append(f"--in_channels must be 1 (grey) or 3 (colour), got {in_channels!r}")
    if out_channels is not None and structures is not None:
        needed = 1 if len(structures) == 1 else len(structures) + 1
        if out_channels != needed:
            problems.append(
                f"--out_channels {out_channels!r} does not fit the {len(structures)} structure(s) of the labels: it "
                f"follows from them ({needed}); leave it out"
            )
    elif out_channels is not None and not (_whole(out_channels) and out_channels >= 1):
        problems.append(f"--out_channels must be a whole number of at least 1, got {out_channels!r}")
    if problems:
        raise ValueError("; ".join(problems) + ".")


def engine_log(verbose: object) -> bool:
    """Show ignite's per-engine INFO lines ("Engine run resuming...", "Epoch[1] Complete...") or keep them quiet.

    The bundles log their own line per epoch; ignite's five lines around it are for debugging (``--engine_log true``).
    MONAI's ``--logging_file`` configures everything else as before.

    Args:
        verbose: the ``engine_log`` setting (see :func:`flag`).

    Returns:
        The setting as a bool.
    """
    verbose = flag(verbose, "engine_log")
    logging.getLogger("ignite.engine").setLevel(logging.INFO if verbose else logging.WARNING)
    return verbose


def terminal() -> bool:
    """Whether stderr is a terminal: progress bars there, none in the logs of batch jobs."""
    return sys.stderr.isatty()


def _is_auto(value: object) -> bool:
    """Whether a setting is ``auto`` (any case, spaces around), the value that lets the device decide."""
    return isinstance(value, str) and value.strip().lower() == "auto"


def gpu_flag(value: object, name: str, device: object) -> bool:
    """A GPU speed-up setting: ``auto`` means on for a CUDA device and off elsewhere; otherwise as :func:`flag`.

    Args:
        value: ``"auto"``, or an on/off value.
        name: the setting, for the message.
        device: the run's device (a ``torch.device`` or its name).

    Returns:
        Whether the speed-up is used.
    """
    if _is_auto(value):
        return str(device).startswith("cuda")
    return flag(value, name)


def amp_flag(value: object, device: object) -> bool:
    """The ``amp`` setting: ``auto`` means bfloat16 autocast where the device runs it natively (a CUDA device, or a
    CPU with AVX512-BF16 or AMX: :func:`~pipeline.inference.autocast.native_bf16`); otherwise as :func:`flag`.

    On the CPU, bfloat16 runs each network's forward pass 1.5-3 x as fast as float32 with the validation IoU within
    0.0005 (``docs/evidence/cpu-speed.md``). Asked for on a CPU without those instructions, it is emulated and slower
    (2-4 x with AVX-512, 8-50 x with AVX2 only, measured with oneDNN held to those instructions): a warning says so.

    Args:
        value: ``"auto"``, or an on/off value.
        device: the run's device (a ``torch.device`` or its name).

    Returns:
        Whether the network runs under bfloat16 autocast.
    """
    from pipeline.inference.autocast import native_bf16

    if _is_auto(value):
        return native_bf16(str(device))
    on = flag(value, "amp")
    if on and not native_bf16(str(device)):
        logging.getLogger("pipeline.bundle").warning(
            "--amp true on %s: this device has no native bfloat16 (AVX512-BF16 or AMX on a CPU), so bfloat16 is "
            "emulated and slower than float32 (measured 2-4 x slower with AVX-512, 8-50 x with AVX2 only); leave "
            "--amp at auto",
            device,
        )
    return on


def choose_recipe(recipe: object, in_channels: object, recipes: Iterable[str]) -> str:
    """The training recipe a run uses: ``auto`` means ``colour`` for colour images (3 input channels: endoscopy,
    dermoscopy, microscopy) and ``default`` for grey ones (CT, MR, X-ray); any other value names a recipe.

    The ``colour`` recipe is the ``default`` one with what colour endoscopy measured better with: 60 epochs instead
    of 10 (``docs/evidence/polyps.md``: the unet's Dice 0.53, 0.74 and 0.80 after 10, 30 and 60 on Kvasir-SEG).

    Args:
        recipe: the ``--recipe`` setting.
        in_channels: the network's input channels (from the dataset).
        recipes: the recipes, or their names (a mapping's keys).

    Raises:
        ValueError: ``recipe`` is neither ``auto`` nor a recipe's name.
    """
    name = str(recipe).strip().lower()
    if name == "auto":
        name = "colour" if in_channels == 3 else "default"
        logging.getLogger("pipeline.bundle").info(
            "recipe %s: %s images (--recipe auto)", name, "colour" if in_channels == 3 else "grey"
        )
    names = list(recipes)
    if name not in names:
        raise ValueError(f"--recipe must be auto or one of {', '.join(names)}, got {recipe!r}.")
    return name


def channels_last_flag(value: object, device: object) -> bool:
    """The ``channels_last`` setting: ``auto`` means on for a CUDA device or a CPU, where channels-last convolutions
    measured faster for every network (CPU: +13 to +44 %, ``docs/evidence/cpu-speed.md``); otherwise as :func:`flag`.

    Args:
        value: ``"auto"``, or an on/off value.
        device: the run's device (a ``torch.device`` or its name).
    """
    if _is_auto(value):
        return str(device).split(":")[0] in ("cuda", "cpu")
    return flag(value, "channels_last")


def set_cudnn_benchmark(enabled: bool) -> bool:
    """Let cuDNN time its convolution algorithms for the input sizes it sees (fixed sizes: faster after the first
    batches, not bit-reproducible). Called after MONAI's ``set_determinism``, which turns it off.

    Returns:
        ``enabled``.
    """
    import torch

    torch.backends.cudnn.benchmark = bool(enabled)
    return bool(enabled)


def place(network: nn.Module, device: str | torch.device, channels_last: bool = False) -> nn.Module:
    """Move ``network`` to ``device``, in channels-last memory format when asked (faster convolutions on tensor cores).

    Returns:
        ``network`` itself (moved in place), so that a config can chain it.
    """
    import torch

    if channels_last:
        return network.to(device=device, memory_format=torch.channels_last)
    return network.to(device)


def check_device(value: str | torch.device) -> torch.device:
    """``value`` as a device this machine has, or a one-line refusal.

    Args:
        value: ``"cpu"``, ``"cuda"``, ``"cuda:1"``... as typed after ``--device``.

    Raises:
        ValueError: naming the value, when torch does not know it, or it names a CUDA device this machine lacks
            (torch would fail deep inside the first model call, or abort the process).
    """
    import torch

    try:
        device = torch.device(value)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"--device {value!r} is not a device: use cpu, cuda or cuda:<index>") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"--device {value} asks for CUDA, but this machine has no CUDA device: use --device cpu")
        if device.index is not None and device.index >= count:
            raise ValueError(f"--device {value}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
    elif device.type not in ("cpu", "mps", "xpu"):
        raise ValueError(f"--device {value}: the pipeline runs on cpu or cuda")
    return device


def default_device() -> torch.device:
    """The first CUDA device when there is one, else the CPU (the bundles' ``device``; ``--device`` overrides it)."""
    import torch

    return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")


def to_kwargs(channels_last: bool) -> dict[str, Any] | None:
    """The engines' ``to_kwargs``: batches in channels-last memory format when the network is (:func:`place`)."""
    import torch

    return {"memory_format": torch.channels_last} if channels_last else None


def transform_list(parts: Sequence[Callable | Sequence[Callable] | None]) -> list[Callable]:
    """One flat list of transforms from single transforms, lists of them and ``Compose`` objects (their steps), in
    order; ``None`` (a disabled entry) is left out. A config joins its named pieces with it::

        {"_target_": "pipeline.bundle.transform_list", "parts": ["@image_transforms", "@validate#resize"]}

    Raises:
        TypeError: a part is neither a transform, a list of them nor ``None``.
    """
    flat: list[Callable] = []
    for part in parts:
        if part is None:
            continue
        if hasattr(part, "transforms") and callable(part):  # a Compose: its steps
            flat.extend(part.transforms)
        elif callable(part):
            flat.append(part)
        elif isinstance(part, Sequence) and not isinstance(part, str) and all(callable(t) for t in part):
            flat.extend(part)
        else:
            raise TypeError(f"transform_list takes transforms and lists of transforms, got {part!r}")
    return flat


def warn_unused(value: object, name: str, reason: str) -> None:
    """Log a warning when a setting that this workflow no longer uses was given (``value`` is not ``None``).

    Args:
        value: the setting's value; ``None`` (its default in the config) means it was not given.
        name: the setting, as typed on the command line.
        reason: why it has no effect, and what to do instead.
    """
    if value is not None:
        logging.getLogger("pipeline.bundle").warning("--%s %s has no effect here: %s", name, value, reason)
