"""Training and model-only inference images/s of a bundle's network: fp32, bf16, bf16 + channels_last, + compile.

The one script a session with a GPU runs (it needs only this repository and its requirements): synthetic batches of
the training shape already on the device (so that the figures are the model's, not the data pipeline's), the bundle's
own network, ``DiceCELoss`` and Adam. Each variant is timed after warm-up steps, synchronised; ``torch.compile``'s
compile time is the extra time of its warm-up steps over the same steps of the variant without compile, reported apart.
Achieved TFLOP/s uses PyTorch's FLOP counter on one forward (training counts forward and backward as 3 forwards) and
is reported against ``--peak_tflops`` (989 for an H200's dense bf16). Then the training batch size is doubled, with
the fastest variant, until memory runs out or images/s stops rising: the batch that fills the GPU. Prints one JSON
object. On the device machine::

    python tests/benchmarks/bench_gpu.py --bundle cenet --spatial_size 448 --batch_size 32
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch
from monai.bundle import ConfigParser
from monai.losses import DiceCELoss
from torch.utils.flop_counter import FlopCounterMode

REPO = Path(__file__).resolve().parents[2]
VARIANTS = {
    "fp32": {"amp": False, "channels_last": False, "compile": False},
    "bf16": {"amp": True, "channels_last": False, "compile": False},
    "bf16_channels_last": {"amp": True, "channels_last": True, "compile": False},
    "bf16_channels_last_compile": {"amp": True, "channels_last": True, "compile": True},
}


def _network(bundle: str, device: torch.device, channels_last: bool) -> torch.nn.Module:
    parser = ConfigParser()
    parser.read_config(REPO / "bundles" / bundle / "train.json")
    network = parser.get_parsed_content("network_def").to(device)
    return network.to(memory_format=torch.channels_last) if channels_last else network


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(step: Callable[[], None], steps: int, device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return time.perf_counter() - start


def _out_channels(bundle: str) -> int:
    """The output channels the bundle's default data gives its network (the demo's structures and the background)."""
    parser = ConfigParser()
    parser.read_config(REPO / "bundles" / bundle / "train.json")
    return int(parser.get_parsed_content("out_channels"))


def _batch(
    batch_size: int, size: int, device: torch.device, channels_last: bool, out_channels: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random images and targets: a binary mask for one output channel, one-hot labels of random structures for more."""
    generator = torch.Generator(device="cpu").manual_seed(0)
    images = torch.rand(batch_size, 1, size, size, generator=generator).to(device)
    if out_channels == 1:
        labels = (torch.rand(batch_size, 1, size, size, generator=generator) > 0.7).float()
    else:
        values = torch.randint(0, out_channels, (batch_size, size, size), generator=generator)
        labels = torch.nn.functional.one_hot(values, out_channels).permute(0, 3, 1, 2).float()
    labels = labels.to(device)
    if channels_last:
        images, labels = (t.contiguous(memory_format=torch.channels_last) for t in (images, labels))
    return images, labels


def forward_gflop(bundle: str, size: int) -> float:
    """GFLOP of one forward pass of one image (PyTorch's counter, on the CPU)."""
    network = _network(bundle, torch.device("cpu"), channels_last=False).eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        network(torch.zeros(1, 1, size, size))
    return counter.get_total_flops() / 1e9


def measure(args: argparse.Namespace, name: str, batch_size: int, device: torch.device) -> dict:
    """Training and inference images/s of one variant at one batch size."""
    variant = VARIANTS[name]
    torch.manual_seed(0)
    network = _network(args.bundle, device, variant["channels_last"])
    model = torch.compile(network) if variant["compile"] else network
    out_channels = _out_channels(args.bundle)
    loss_function = DiceCELoss(sigmoid=True) if out_channels == 1 else DiceCELoss(softmax=True)
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-4)
    images, labels = _batch(batch_size, args.spatial_size, device, variant["channels_last"], out_channels)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=variant["amp"])
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def train_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss = loss_function(model(images), labels)
        loss.backward()
        optimizer.step()

    def infer_step() -> None:
        with torch.inference_mode(), autocast:
            model(images)

    network.train()
    warmup_s = _timed(train_step, args.warmup, device)
    train_s = _timed(train_step, args.steps, device)
    network.eval()
    infer_warmup_s = _timed(infer_step, args.warmup, device)
    infer_s = _timed(infer_step, args.steps, device)
    images_done = batch_size * args.steps
    return {
        "variant": name,
        "batch_size": batch_size,
        "train_images_per_s": round(images_done / train_s, 1),
        "inference_images_per_s": round(images_done / infer_s, 1),
        "warmup_s": round(warmup_s, 2),
        "inference_warmup_s": round(infer_warmup_s, 2),
        "peak_memory_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else None,
    }


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--bundle", default="cenet")
    cli.add_argument("--spatial_size", type=int, default=448)
    cli.add_argument("--batch_size", type=int, default=32)
    cli.add_argument("--steps", type=int, default=20, help="timed steps per variant")
    cli.add_argument("--warmup", type=int, default=5, help="untimed steps first (compile happens here)")
    cli.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    cli.add_argument("--max_batch_size", type=int, default=1024, help="largest batch tried when filling the GPU")
    cli.add_argument("--peak_tflops", type=float, default=989.0, help="dense bf16 peak of the GPU (H200: 989)")
    cli.add_argument("--device", default="cuda:0" if torch.cuda.is_available() else "cpu")
    args = cli.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    gflop = forward_gflop(args.bundle, args.spatial_size)
    rows = [measure(args, name, args.batch_size, device) for name in args.variants]
    by_name = {row["variant"]: row for row in rows}
    for row in rows:
        row["train_tflops"] = round(row["train_images_per_s"] * 3 * gflop / 1000, 1)
        row["train_share_of_peak"] = round(row["train_tflops"] / args.peak_tflops, 3)
        row["inference_tflops"] = round(row["inference_images_per_s"] * gflop / 1000, 1)
        without = row["variant"].removesuffix("_compile")
        if row["variant"] != without and without in by_name:
            row["compile_s"] = round(row["warmup_s"] - by_name[without]["warmup_s"], 2)

    fastest = max(rows, key=lambda r: r["train_images_per_s"])["variant"]
    filling = []
    batch_size = args.batch_size * 2
    while device.type == "cuda" and batch_size <= args.max_batch_size:
        try:
            row = measure(args, fastest, batch_size, device)
        except torch.OutOfMemoryError:
            filling.append({"batch_size": batch_size, "out_of_memory": True})
            break
        finally:
            torch.cuda.empty_cache()
        filling.append(row)
        best_before = max([r["train_images_per_s"] for r in rows if r["variant"] == fastest] + [
            r["train_images_per_s"] for r in filling[:-1] if "train_images_per_s" in r
        ])  # fmt: skip
        if row["train_images_per_s"] < 1.03 * best_before:
            break
        batch_size *= 2

    result = {
        "machine": {
            "platform": platform.platform(),
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "torch": torch.__version__,
        },
        "settings": {**vars(args), "forward_gflop_per_image": round(gflop, 2)},
        "variants": rows,
        "batch_fill": {"variant": fastest, "rows": filling},
        "targets": {"train_images_per_s": 2000, "inference_images_per_s": 6000},
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
