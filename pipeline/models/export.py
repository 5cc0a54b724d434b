"""Export trained weights to TorchScript and ONNX and check them against PyTorch.

Running an export is :class:`pipeline.models.ExportedNetwork`'s job.

The exported files go beside the weights (``models/model.pt`` -> ``models/model.ts`` and ``models/model.onnx``), so
they share its model card (``models/model.json``): inference and evaluation given ``--checkpoint .../model.onnx`` read
the same settings and apply the same pre- and postprocessing. TorchScript is MONAI's ``convert_to_torchscript``
(what ``python -m monai.bundle ckpt_export`` writes); ONNX is ``torch.onnx.export`` at opset :data:`OPSET` with a
dynamic batch size, height and width, run with ``onnxruntime``.

    python -m pipeline.models.export outputs/unet/latest          # the run's models/model.pt -> model.ts, model.onnx
    python -m pipeline.models.export path/to/model.pt --formats onnx

Each export is checked on random inputs of the trained size (and a second size, for the dynamic axes): the largest
absolute logit difference from PyTorch is printed and written to ``export.json`` beside the files. A model of several
structures exports as any other, its ``K + 1`` softmax logits (background first) in place of one sigmoid logit; each
file names its output channels, as the packaged bundle's metadata does (:func:`pipeline.models.package.channel_def`):
``export.json`` and the ONNX model's metadata (``channel_def``, a JSON object: channel index -> structure) and the
TorchScript file's extra file ``channel_def.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pipeline.atomic import atomic_output, write_json
from pipeline.errors import require_extra
from pipeline.models.card import ModelCard, card_structures
from pipeline.models.package import channel_def
from pipeline.models.weights import FORMATS, ExportedNetwork, load_state_dict_file

__all__ = ["CHANNEL_DEF", "OPSET", "export_model", "export_onnx", "export_torchscript", "max_difference"]

logger = logging.getLogger(__name__)

OPSET = 18
"""The ONNX opset of exports: supported by onnxruntime 1.16 and later, and by TensorRT 8.6 and later."""
CHANNEL_DEF = "channel_def"
"""The key under which an export names its output channels: the ONNX metadata key, and the TorchScript extra file
``channel_def.json``; its value is a JSON object, channel index -> structure."""


def export_torchscript(network: nn.Module, path: str | os.PathLike, channels: Mapping[str, str] | None = None) -> Path:
    """Script ``network`` (MONAI's ``convert_to_torchscript``) and save it to ``path``, atomically.

    Args:
        network: the network, on the CPU.
        path: the ``.ts`` file.
        channels: channel index -> structure (:func:`pipeline.models.package.channel_def`), saved as the extra file
            ``channel_def.json`` (``torch.jit.load(path, _extra_files={"channel_def.json": ""})`` reads it back).

    Raises:
        RuntimeError: the network cannot be scripted (torch's message).
    """
    from monai.networks.utils import convert_to_torchscript

    scripted = convert_to_torchscript(network.eval())
    extra = {f"{CHANNEL_DEF}.json": json.dumps(dict(channels))} if channels else {}
    with atomic_output(path) as tmp:
        torch.jit.save(scripted, str(tmp), _extra_files=extra)
    return Path(path)


def export_onnx(
    network: nn.Module,
    path: str | os.PathLike,
    example: torch.Tensor,
    opset: int = OPSET,
    dynamic: bool = True,
    channels: Mapping[str, str] | None = None,
) -> Path:
    """Export ``network`` to ONNX at ``path``, atomically.

    Args:
        network: the network, on the CPU.
        path: the ``.onnx`` file.
        example: a (B, C, H, W) input of the trained size, for tracing.
        opset: the ONNX opset.
        dynamic: batch size, height and width are free (``image`` -> ``logits``, both ``(batch, C, height, width)``).
        channels: channel index -> structure (:func:`pipeline.models.package.channel_def`), written into the model's
            metadata under ``channel_def`` (``onnxruntime``: ``session.get_modelmeta().custom_metadata_map``).

    Raises:
        RuntimeError: torch cannot export the network (its message).
        ImportError: ``onnx`` is not installed; the message names the extra (``pip install -e ".[export]"``).
    """
    onnx = require_extra("onnx", "export", "ONNX export")
    axes = {0: "batch", 2: "height", 3: "width"}
    with atomic_output(path) as tmp, torch.no_grad():
        torch.onnx.export(
            network.eval(),
            (example,),
            str(tmp),
            input_names=["image"],
            output_names=["logits"],
            opset_version=opset,
            dynamic_axes={"image": axes, "logits": axes} if dynamic else None,
            dynamo=False,
        )
        if channels:
            model = onnx.load(str(tmp))
            onnx.helper.set_model_props(model, {CHANNEL_DEF: json.dumps(dict(channels))})
            onnx.save(model, str(tmp))
    return Path(path)


def max_difference(network: nn.Module, exported: nn.Module, inputs: Sequence[torch.Tensor]) -> float:
    """The largest absolute logit difference between ``network`` and ``exported`` over ``inputs`` (eval mode)."""
    worst = 0.0
    network.eval()
    with torch.no_grad():
        for x in inputs:
            worst = max(worst, float((network(x) - exported(x)).abs().max()))
    return worst


def _bundle_parts(weights: Path) -> tuple[nn.Module, dict[str, Any]]:
    """The network (weights loaded, CPU) and settings of ``weights``, built from its bundle's inference config: the
    input size and channels, and the output channels' names (:func:`pipeline.models.package.channel_def`)."""
    from monai.bundle import ConfigParser

    card = ModelCard.read(weights)
    if not card.found:
        raise ValueError(f"{weights} has no model card (model.json beside it): export needs to know its bundle")
    parser = ConfigParser()
    parser.read_config(str(card.bundle_dir() / "inference.json"))
    parser.update({"checkpoint": str(weights), "device": "cpu"})
    network = load_state_dict_file(parser.get_parsed_content("network_def"), weights).eval()
    settings = {k: parser.get_parsed_content(k) for k in ("spatial_size", "in_channels")}
    settings["channel_def"] = channel_def(card_structures(card))
    return network, settings


def export_model(
    weights: str | os.PathLike, formats: Sequence[str] = tuple(FORMATS), seed: int = 0
) -> dict[str, dict[str, Any]]:
    """Export ``weights`` (a state dict with its model card) to every format in ``formats``, beside it, and check each.

    Args:
        weights: e.g. ``outputs/unet/latest/models/model.pt``.
        formats: keys of :data:`FORMATS`.
        seed: seed of the random check inputs.

    Returns:
        Format -> ``{"file", "max_abs_logit_difference", "checked_shapes"}``; also written to ``export.json``, with
        ``out_channels`` and ``channel_def`` (channel index -> structure, background first for several).

    Raises:
        ValueError: an unknown format, or weights without a model card.
    """
    weights = Path(weights)
    if not weights.is_file():
        raise FileNotFoundError(f"No weights file at {weights}: give a run folder or its models/model.pt.")
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise ValueError(f"unknown export format(s) {unknown}; choose from {sorted(FORMATS)}")
    network, settings = _bundle_parts(weights)
    height, width = settings["spatial_size"]
    generator = torch.Generator().manual_seed(seed)
    shapes = [(1, settings["in_channels"], height, width), (2, settings["in_channels"], height + 32, width + 64)]
    inputs = [torch.randn(s, generator=generator) for s in shapes]
    report: dict[str, dict[str, Any]] = {}
    for kind in formats:
        path = weights.with_suffix(FORMATS[kind])
        channels = settings["channel_def"]
        if kind == "torchscript":
            export_torchscript(network, path, channels=channels)
        else:
            export_onnx(network, path, inputs[0], channels=channels)
        difference = max_difference(network, ExportedNetwork(path), inputs)
        report[kind] = {"file": path.name, "max_abs_logit_difference": difference, "checked_shapes": shapes}
        if kind == "onnx":
            report[kind]["opset"] = OPSET
        logger.info("%s: max |logit difference| from PyTorch %.3g over inputs %s", path.name, difference, shapes)
    channels = settings["channel_def"]
    record = {"weights": weights.name, "out_channels": len(channels), "channel_def": channels, "exports": report}
    write_json(record, weights.parent / "export.json")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("weights", type=Path, help="a weights file with its model card, or a run folder")
    parser.add_argument("--formats", nargs="+", default=list(FORMATS), choices=list(FORMATS))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    weights = args.weights / "models" / "model.pt" if args.weights.is_dir() else args.weights
    try:
        report = export_model(weights, args.formats)
    except (OSError, ValueError, RuntimeError, ImportError) as e:
        print(f"error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 1
    print(json.dumps(report, indent=2))
    return 0 if all(np.isfinite(r["max_abs_logit_difference"]) for r in report.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
