"""Benchmark (not a test): a CT series on a plain CPU, our bundles beside lungmask, and each model against the machine.

In one process, on the same cores:

1. **Series.** A phantom chest CT of ``--slices`` axial slices of ``--size`` pixels (the demo study's phantom,
   :func:`pipeline.demo.synthesize_ct_volume`, reconstructed with the smooth B40f kernel and written 1 mm apart by
   :func:`pipeline.demo.write_ct_series`), plus each series of ``--study`` that our inference selects (the bundles'
   series rules: localizers, dose reports and the like are left out, each named with its reason). Each selected
   series is linked, file by file, into a folder of its own in ``--work_dir``, so that both tools read exactly that
   series, whatever the export's layout or file names. The phantom is cached in ``--work_dir``.
2. **lungmask's weights.** lungmask's own cannot be downloaded here, so its R231 architecture (built as
   ``lungmask.mask.get_model`` builds it) is trained for ``--lungmask_steps`` steps on ``--dataset_dir``'s training
   split, preprocessed as lungmask preprocesses (body crop, 256 x 256, [-1024, 600] HU); the right and left lungs are
   the mask either side of the body box's middle column. Its masks, and so its 3D post-processing, do realistic
   work. Cached in ``--work_dir``; ``--lungmask_weights`` takes a state dict instead.
3. **Side by side**, per series and alternating: lungmask's command line (``lungmask SERIES OUT.nii.gz --modelpath
   W``, on the CPU with its default batch of 20, start-up included) and, per bundle, our command line (``python -m
   monai.bundle run inference``, start-up included), our runner warm in this process and the model alone on the same
   slices (``bench_study_inference._model_only``), the last two in float32 with contiguous weights (the CPU's default
   before issue 29) and in the bundles' default on this CPU (:func:`cpu_default`: bfloat16 autocast with
   channels-last weights on a CPU with native bfloat16, float32 with channels-last weights on any other).
4. **The machine's ceiling**: the best GFLOP/s of square matmuls (MKL) and of a wide 3 x 3 convolution (oneDNN) in
   float32 and bfloat16, at each of ``--threads``, measured at the start and again beside the models; the best of all
   is the ceiling.
5. **Each network alone** (ours and R231) on a synthetic batch of ``--batch_size`` at its input size (the model card's,
   or ``--spatial_size`` for untrained weights; R231: 256 and half the batch): float32 and bfloat16 autocast,
   contiguous and channels_last, at each of ``--threads`` (R231: the most); GFLOP/s from PyTorch's FLOP counter
   (convolutions and matmuls only) and its share of the ceiling of the same precision and threads; ONNX Runtime in
   float32 with ``--onnx``.
6. **bfloat16 against float32**: our predictor on ``--dataset_dir``'s validation split at native resolution, in
   float32 and then under bfloat16 autocast: Dice between the two masks, IoU of each against the ground truth.

On a CPU without native bfloat16 (no AVX512-BF16 or AMX) bfloat16 is emulated, 2-50 x slower than float32, and the
bundles run in float32: the bfloat16 rows of sections 5 and 6 are then left out (``--emulated_bf16`` times them
anyway), and R231 trains in float32.

Our checkpoints: ``--checkpoint bundle=path``, else ``--train_epochs`` epochs of the bundle's own training command at
``--spatial_size`` on ``--dataset_dir`` (``bench_recipes._train``, cached in ``--work_dir``), else untrained weights
(then section 6 is skipped for that bundle). Prints readable lines, then one JSON object (the last line). From the
repository root::

    python tests/benchmarks/bench_cpu_lungmask.py --dataset_dir ../shared/data/lung_ct --study ../shared/data/dicom \
        --work_dir /tmp/bench_cpu --slices 300 --train_epochs 2 --onnx
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import importlib.util
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from bench_gpu import forward_gflop
from bench_recipes import _train
from bench_study_inference import _model_only, _parser
from monai.bundle import ConfigParser
from pydicom.uid import generate_uid
from scipy import ndimage
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from pipeline.bundle import amp_flag, channels_last_flag
from pipeline.demo import scan, synthesize_ct_volume, write_ct_series
from pipeline.inference import EXIT_FLAGGED, find_inputs
from pipeline.inference.autocast import native_bf16
from pipeline.intake import load_datalist, split_datalist
from pipeline.io import LoadSlice
from pipeline.io.dicom_series import SeriesRules

REPO = Path(__file__).resolve().parents[2]
BUNDLES = ("cenet", "unet", "aspp", "inception_unet")
#: lungmask.mask.get_model's R231 U-Net (R231's state dict has 3 output channels: background, right, left lung).
R231 = {"n_classes": 3, "padding": True, "depth": 5, "up_mode": "upsample", "batch_norm": True, "residual": False}
LUNGMASK_SIZE = 256  # lungmask's input size (lungmask.mask.LMInferer._inference)


@dataclass(frozen=True)
class Setting:
    """How our networks run: bfloat16 autocast or float32, channels-last or contiguous weights."""

    amp: bool
    channels_last: bool

    @property
    def dtype(self) -> str:
        """``"bf16"`` or ``"fp32"``: which of the machine's ceilings the model's speed is a share of."""
        return "bf16" if self.amp else "fp32"


BEFORE = Setting(amp=False, channels_last=False)
"""The CPU's default before issue 29: float32 with contiguous weights."""


def cpu_default() -> Setting:
    """The bundles' default on this CPU (``--amp auto``, ``--channels_last auto``): bfloat16 autocast where the CPU
    runs it natively, channels-last weights on every CPU."""
    return Setting(amp_flag("auto", "cpu"), channels_last_flag("auto", "cpu"))


@dataclass(frozen=True)
class Series:
    """A series both tools segment: a folder holding its files and nothing else, and its number of slices."""

    folder: Path
    slices: int


@contextlib.contextmanager
def _threads(count: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _best_seconds(call: Callable[[], object], repeats: int) -> float:
    """The fastest of ``repeats`` timed calls, after one untimed call."""
    call()
    times = []
    for _ in range(repeats):
        tick = time.perf_counter()
        call()
        times.append(time.perf_counter() - tick)
    return min(times)


def machine() -> dict[str, Any]:
    """The CPU's model name (lscpu), its bfloat16 instruction flags and PyTorch's build."""
    name = platform.processor()
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        name = next((ln.split(":", 1)[1].strip() for ln in lscpu.splitlines() if ln.startswith("Model name")), name)
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []
    flags = next((set(ln.split(":", 1)[1].split()) for ln in lines if ln.startswith("flags")), set())
    return {
        "cpu": name,
        "cpus": os.cpu_count(),
        "bf16_flags": sorted(flags & {"avx512_bf16", "amx_bf16", "amx_tile", "avx_ne_convert"}),
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "platform": platform.platform(),
    }


def machine_ceiling(
    dtype: torch.dtype, threads: int, sizes: Sequence[int] = (2048, 4096), channels: int = 512, repeats: int = 3
) -> dict[str, float]:
    """The machine's practical ceiling in ``dtype`` on ``threads`` threads, two ways: GFLOP/s of the fastest square
    matmul (PyTorch's BLAS, MKL) and of a wide 3 x 3 convolution (``channels`` in and out, 64 x 64, batch 4,
    channels_last: oneDNN, which the networks' convolutions use; bfloat16 through autocast, as the networks run)."""
    matmul = 0.0
    with _threads(threads), torch.inference_mode():
        for n in sizes:
            a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
            matmul = max(matmul, 2 * n**3 / _best_seconds(lambda a=a, b=b: a @ b, repeats) / 1e9)
        conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False).eval().to(memory_format=torch.channels_last)
        x = torch.randn(4, channels, 64, 64).contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            seconds = _best_seconds(lambda: conv(x), repeats)
    return {"matmul": round(matmul, 1), "conv3x3": round(2 * 4 * channels**2 * 9 * 64 * 64 / seconds / 1e9, 1)}


# ------------------------------------------------------------------------------------------------------------ series
def phantom_series(work_dir: Path, slices: int, size: int, seed: int = 0) -> Series:
    """A one-series phantom chest CT of ``slices`` axial slices 1 mm apart, written once into ``work_dir``.

    Returns:
        The series (its folder's completion marker is a ``.json`` beside it, so that no reader meets it).
    """
    folder = work_dir / f"phantom_{size}px_{slices}slices_seed{seed}"
    marker = folder.with_suffix(".json")
    if marker.is_file() and folder.is_dir():
        return Series(folder, slices)
    shutil.rmtree(folder, ignore_errors=True)
    tick = time.perf_counter()
    hu, _ = synthesize_ct_volume(size, slices, seed)
    rng = np.random.default_rng([seed, 4])
    image = np.stack([scan(section, rng, sharpness=0.0) for section in hu])  # B40f, like the demo study's series 3
    study_uid = generate_uid(entropy_srcs=["bench_cpu_lungmask", str(size), str(slices), str(seed)])
    spacing = 350.0 / size
    corner = -(size - 1) / 2 * spacing
    write_ct_series(
        folder,
        image,
        study_uid=study_uid,
        series_uid=generate_uid(entropy_srcs=[study_uid, "series"]),
        series_number=2,
        description="Thorax 1.0 B40f (phantom)",
        positions=np.array([(corner, corner, (slices - 1) / 2 - k) for k in range(slices)]),  # instance 1 superior
        pixel_spacing=(spacing, spacing),
        slice_thickness=1.0,
        convolution_kernel="B40f",
    )
    marker.write_text(json.dumps({"slices": slices, "size": size, "seed": seed, "seconds": time.perf_counter() - tick}))
    return Series(folder, slices)


def study_series(study: Path, rules: SeriesRules, work_dir: Path) -> list[Series]:
    """The series of ``study`` that our inference selects, each linked file by file into its own folder.

    The selection is the runner's own (:func:`pipeline.inference.find_inputs` with the bundles' series rules), so a
    localizer or a dose report is left out, and each series left out is printed with the reason. Each
    selected series (or part of one, when the rules split it) gets a folder of symbolic links to its files under
    ``work_dir/series``, named by its de-identified label: lungmask reads every file of the folder it is given, and
    a study folder, or one folder holding several series, would hand it more than the series.

    Raises:
        ValueError: ``study`` holds no series that the rules select (the message says what was found instead).
    """
    inputs = find_inputs(study, rules)
    for series, reason in inputs.rejected:
        print(f"{series.label} ({len(series.files)} files) left out: {reason}", flush=True)
    if not inputs.series:
        found = f"{len(inputs.rejected)} series left out (above), {len(inputs.skipped)} other files"
        raise ValueError(f"--study {study}: no DICOM series our inference would segment ({found})")
    selected = []
    for series in inputs.series:
        folder = work_dir / "series" / series.label
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for k, file in enumerate(series.files):
            (folder / f"{k:05d}_{file.name}").symlink_to(file.resolve())
        selected.append(Series(folder, len(series.files)))
    return selected


# ---------------------------------------------------------------------------------------------------------- lungmask
def _r231_slice(image_hu: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One slice as lungmask's inference feeds it to R231, and its labels (1 right, 2 left lung) on the same grid."""
    from lungmask import utils

    image, box = utils.crop_and_resize(np.clip(image_hu, -1024, 600), width=LUNGMASK_SIZE, height=LUNGMASK_SIZE)
    lungs = (mask[box[0] : box[2], box[1] : box[3]] > 0).astype(np.uint8)
    lungs = ndimage.zoom(lungs, np.asarray([LUNGMASK_SIZE, LUNGMASK_SIZE]) / np.asarray(lungs.shape), order=0)
    side = np.where(np.arange(LUNGMASK_SIZE)[None, :] < LUNGMASK_SIZE // 2, 1, 2)  # patient's right: image left
    normalised = (np.minimum(image, 600) + 1024) / 1624
    return normalised.astype(np.float32), np.where(lungs > 0, side, 0).astype(np.int64)


def _r231_data(items: Sequence[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    load = LoadSlice()
    pairs = [_r231_slice(load(i["image"])[0].numpy(), load(i["label"])[0].numpy()) for i in items]
    return torch.from_numpy(np.stack([p[0] for p in pairs]))[:, None], torch.from_numpy(np.stack([p[1] for p in pairs]))


def train_r231(
    dataset_dir: Path, weights: Path, steps: int = 80, batch_size: int = 4, rows: int = 128, lr: float = 3e-4
) -> dict[str, Any]:
    """Train lungmask's R231 U-Net briefly and save its state dict to ``weights`` (reused when it exists).

    Bands of ``rows`` full-width rows of the 256 x 256 body crop, so that each band shows which side it is on; Adam,
    negative log-likelihood of R231's log-softmax output, bfloat16 autocast where the CPU runs it natively (float32
    elsewhere). Scored on the validation split (no post-processing): IoU of each lung and of both.

    Args:
        dataset_dir: 2D CT slices in HU with lung masks (any format :func:`pipeline.intake.load_datalist` reads).
        weights: the ``.pth`` file; its record is the ``.json`` beside it.
        steps: optimiser steps. Defaults to 80 (about 3 minutes on 2 cores).
        batch_size: bands per step. Defaults to 4.
        rows: rows per band. Defaults to 128.
        lr: Adam's learning rate. Defaults to 3e-4.

    Returns:
        The record: settings, training seconds and validation IoUs.
    """
    from lungmask.resunet import UNet

    record_path = weights.with_suffix(".json")
    if weights.is_file() and record_path.is_file():
        return json.loads(record_path.read_text())
    splits = split_datalist(load_datalist(dataset_dir))
    images, labels = _r231_data(splits["train"])
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    network = UNet(in_channels=1, **R231)
    optimizer = torch.optim.Adam(network.parameters(), lr=lr)
    bf16 = native_bf16("cpu")
    tick = time.perf_counter()
    for _ in range(steps):
        pick = rng.choice(len(images), batch_size, replace=False)
        top = int(rng.integers(0, LUNGMASK_SIZE - rows + 1))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            log_probs = network(images[pick, :, top : top + rows])
        loss = nn.functional.nll_loss(log_probs.float(), labels[pick, top : top + rows])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    seconds = time.perf_counter() - tick
    network.eval()
    val_images, val_labels = _r231_data(splits["val"])
    with torch.inference_mode():
        predicted = torch.cat([network(val_images[i : i + 8]).argmax(1) for i in range(0, len(val_images), 8)])

    def iou(p: torch.Tensor, t: torch.Tensor) -> float:
        return round(float((p & t).sum() / (p | t).sum().clamp(min=1)), 3)

    record = {
        "weights": str(weights),
        "steps": steps,
        "batch_size": batch_size,
        "rows": rows,
        "lr": lr,
        "precision": "bf16" if bf16 else "fp32",
        "train_s": round(seconds, 1),
        "val_iou_right": iou(predicted == 1, val_labels == 1),
        "val_iou_left": iou(predicted == 2, val_labels == 2),
        "val_iou_lungs": iou(predicted > 0, val_labels > 0),
    }
    weights.parent.mkdir(parents=True, exist_ok=True)
    torch.save(network.state_dict(), weights.with_suffix(".tmp"))
    weights.with_suffix(".tmp").replace(weights)
    record_path.write_text(json.dumps(record))
    return record


def lungmask_command(series: Path, output: Path, weights: Path) -> list[str]:
    """lungmask's own command line (its console script beside this Python, else ``python -m lungmask``)."""
    script = Path(sys.executable).with_name("lungmask")
    program = [str(script)] if script.is_file() else [sys.executable, "-m", "lungmask"]
    return [*program, str(series), str(output), "--modelpath", str(weights), "--noprogress"]


def lungmask_volume_ml(mask_file: Path) -> float:
    """Millilitres labelled lung (right and left) in lungmask's output file."""
    import SimpleITK as sitk  # a dependency of lungmask

    image = sitk.ReadImage(str(mask_file))
    return float((sitk.GetArrayViewFromImage(image) > 0).sum() * np.prod(image.GetSpacing()) / 1000)


def _timed_command(command: list[str], env: dict[str, str] | None = None, accept: Sequence[int] = (0,)) -> float:
    """Seconds the command took; ``RuntimeError`` with the end of its error output when it exits outside
    ``accept``."""
    tick = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    seconds = time.perf_counter() - tick
    if result.returncode not in accept:
        raise RuntimeError(f"{' '.join(command[:6])} ... exited {result.returncode}:\n{result.stderr[-3000:]}")
    return seconds


# ------------------------------------------------------------------------------------------------------- our bundles
@dataclass
class Bundle:
    """One bundle's checkpoint and its inference config, parsed once (the runner warm in this process)."""

    name: str
    checkpoint: Path
    trained: bool
    spatial_size: int | None  # an override for untrained weights (no model card); None: the card's
    parser: ConfigParser
    runner: Any

    @property
    def predictor(self) -> Any:
        return self.parser.get_parsed_content("predictor")

    def use(self, setting: Setting) -> None:
        """Run the warm runner's networks in ``setting``: bfloat16 autocast (the inferer's ``amp``) or float32,
        channels-last or contiguous weights."""
        self.predictor.amp = False
        self.parser.get_parsed_content("validate#inferer").amp = setting.amp
        memory_format = torch.channels_last if setting.channels_last else torch.contiguous_format
        for network in self.parser.get_parsed_content("networks"):
            network.to(memory_format=memory_format)

    def command(self, series: Path, output_dir: Path) -> list[str]:
        """The README's inference command on ``series``."""
        command = [
            sys.executable, "-m", "monai.bundle", "run", "inference",
            "--config_file", str(REPO / "bundles" / self.name / "inference.json"),
            "--input", str(series), "--output_dir", str(output_dir), "--checkpoint", str(self.checkpoint),
            "--device", "cpu",
        ]  # fmt: skip
        return command + (["--spatial_size", f"[{self.spatial_size},{self.spatial_size}]"] if self.spatial_size else [])

    def options(self, series: Path | str) -> SimpleNamespace:
        """The arguments ``bench_study_inference``'s helpers take."""
        return _options(self.name, series, self.checkpoint, self.spatial_size)


def _options(name: str, series: Path | str, checkpoint: Path, spatial_size: int | None) -> SimpleNamespace:
    return SimpleNamespace(
        bundle=name, input=str(series), checkpoint=str(checkpoint), device="cpu", spatial_size=spatial_size
    )


def _checkpoint(name: str, args: argparse.Namespace) -> tuple[Path, bool]:
    """A given checkpoint, else one trained briefly with the bundle's own command (cached), else untrained weights."""
    given = dict(spec.split("=", 1) for spec in args.checkpoint)
    if name in given:
        return Path(given[name]), True
    if args.train_epochs > 0 and args.dataset_dir:
        options = SimpleNamespace(output_dir=str(args.work_dir / "ours"), dataset_dir=str(args.dataset_dir), extra=[])
        size, epochs = args.spatial_size, args.train_epochs
        weights = args.work_dir / "ours" / f"{name}_{size}_{epochs}_default" / "latest" / "models" / "model.pt"
        if not weights.is_file():
            row = _train(name, size, epochs, "default", options)  # bench_recipes' run folder naming, as above
            print(f"trained {name}: {json.dumps(row)}", flush=True)
        if weights.is_file():
            return weights, True
    parser = ConfigParser()
    parser.read_config(REPO / "bundles" / name / "train.json")
    weights = args.work_dir / "ours" / f"{name}_untrained.pt"
    weights.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    torch.save(parser.get_parsed_content("network_def").state_dict(), weights)
    return weights, False


def load_bundle(name: str, args: argparse.Namespace) -> Bundle:
    """Parse the bundle's inference config with its checkpoint, as ``bench_study_inference`` does."""
    checkpoint, trained = _checkpoint(name, args)
    size = None if trained else args.spatial_size
    parser = _parser(_options(name, "", checkpoint, size), str(args.work_dir / "scratch"))
    parser.parse()
    return Bundle(name, checkpoint, trained, size, parser, parser.get_parsed_content("runner"))


def series_rules(name: str) -> SeriesRules:
    """The bundle's DICOM series selection rules, as its inference command reads them."""
    parser = ConfigParser()
    parser.read_config(REPO / "bundles" / name / "inference.json")
    parser.read_meta(REPO / "bundles" / name / "metadata.json")
    return parser.get_parsed_content("series_rules")


def run_warm(bundle: Bundle, series: Path, setting: Setting) -> dict[str, Any]:
    """Our runner, already loaded, on one series into a fresh folder: seconds and the series report's stage times."""
    bundle.use(setting)
    with tempfile.TemporaryDirectory() as out:
        runner = bundle.runner.retargeted(series, out)
        tick = time.perf_counter()
        runner.run()
        seconds = time.perf_counter() - tick
        (report_file,) = Path(out).rglob("report.json")
        report = json.loads(report_file.read_text())
    stages = {k: round(v, 3) for k, v in report["timings"].items()}
    volume_ml = round(report["segmented_volume_ml"], 1)
    return {"seconds": seconds, "stages": stages, "volume_ml": volume_ml, "quality": report["quality"]["status"]}


def model_only(bundle: Bundle, series: Path, setting: Setting) -> float:
    """Seconds of the model alone over the series' slices, preprocessed beforehand (``_model_only``)."""
    bundle.use(setting)
    return _model_only(bundle.parser, bundle.options(series))[0]


def side_by_side(
    series: Sequence[Series], bundles: Sequence[Bundle], weights: Path, args: argparse.Namespace
) -> tuple[list[dict], list[dict]]:
    """Every timing of section 3, one row per (repeat, series, bundle); lungmask runs once per series and repeat.

    Our warm runner and model alone run in float32 with contiguous weights (``before``) and in the bundles' default
    on this CPU (``default``, :func:`cpu_default`). A flagged result (exit status 3: an input or result unlike the
    training data, as briefly trained weights may give) is timed like any other, its status in the row. A series
    that lungmask, or one of our bundles, fails on is printed with the reason and left out of the rows, and the run
    goes on.

    Returns:
        ``(rows, failures)``: the timings, and what failed (repeat, series, tool, reason).
    """
    rows, failures = [], []
    default = cpu_default()
    cpu_only = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # lungmask's CPU path, with its default batch of 20

    def failed(repeat: int, folder: Path, tool: str, error: Exception) -> None:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[-1][:300]
        failures.append({"repeat": repeat, "series": folder.name, "tool": tool, "reason": reason})
        print(f"[{repeat}] {folder.name}: {tool} failed, left out: {reason}", flush=True)

    for repeat in range(args.repeats):
        for folder, slices in ((s.folder, s.slices) for s in series):
            try:
                with tempfile.TemporaryDirectory() as out:
                    mask_file = Path(out) / "lungmask.nii.gz"
                    lungmask_s = _timed_command(lungmask_command(folder, mask_file, weights), cpu_only)
                    lungmask_ml = round(lungmask_volume_ml(mask_file), 1)
            except Exception as e:  # a series lungmask cannot segment is a finding, not the end of the run
                failed(repeat, folder, "lungmask", e)
                continue
            heading = f"[{repeat}] {folder.name}, {slices} slices"
            print(f"{heading}: lungmask {lungmask_s:.1f} s, {lungmask_ml} mL", flush=True)
            for bundle in bundles:
                try:
                    with tempfile.TemporaryDirectory() as out:
                        command_s = _timed_command(bundle.command(folder, Path(out)), accept=(0, EXIT_FLAGGED))
                    before, ours = run_warm(bundle, folder, BEFORE), run_warm(bundle, folder, default)
                    alone = model_only(bundle, folder, BEFORE), model_only(bundle, folder, default)
                except Exception as e:
                    failed(repeat, folder, bundle.name, e)
                    continue
                row = {
                    "repeat": repeat,
                    "series": folder.name,
                    "slices": slices,
                    "bundle": bundle.name,
                    "lungmask_command_s": round(lungmask_s, 2),
                    "ours_command_s": round(command_s, 2),
                    "ours_warm_before_s": round(before["seconds"], 2),
                    "ours_warm_default_s": round(ours["seconds"], 2),
                    "model_only_before_s": round(alone[0], 2),
                    "model_only_default_s": round(alone[1], 2),
                    "lungmask_volume_ml": lungmask_ml,
                    "ours_before_volume_ml": before["volume_ml"],
                    "ours_default_volume_ml": ours["volume_ml"],
                    "stages_before": before["stages"],
                    "stages_default": ours["stages"],
                    "quality": ours["quality"],
                }
                rows.append(row)
                print(
                    f"    {bundle.name}: command {command_s:.1f} s, warm before {row['ours_warm_before_s']} s, default "
                    f"{row['ours_warm_default_s']} s, model only before {row['model_only_before_s']} s, default "
                    f"{row['model_only_default_s']} s ({ours['quality']})",
                    flush=True,
                )
    return rows, failures


def summarise(rows: Sequence[dict], gflops: dict[str, float], ceiling: dict[str, dict[str, float]]) -> list[dict]:
    """Medians over repeats per (series, bundle): seconds per series and per slice, ours over lungmask, end to end
    over model only, and the model's share of the ceiling (its FLOPs over its seconds, at this process's threads)."""
    threads = str(torch.get_num_threads())
    table = []
    for key in dict.fromkeys((r["series"], r["bundle"]) for r in rows):
        group = [r for r in rows if (r["series"], r["bundle"]) == key]
        slices = group[0]["slices"]
        med = {k: statistics.median(r[k] for r in group) for k in group[0] if k.endswith("_s")}
        entry = {"series": key[0], "bundle": key[1], "slices": slices, "runs": len(group)}
        entry.update({k: v for k, v in group[0].items() if k.endswith("_ml")})  # the same masks in every repeat
        for name, seconds in med.items():
            entry[name] = round(seconds, 2)
            entry[name.removesuffix("_s") + "_ms_per_slice"] = round(1000 * seconds / slices, 1)
        for name in ("ours_command_s", "ours_warm_before_s", "ours_warm_default_s"):
            entry[name.removesuffix("_s") + "_over_lungmask"] = round(med[name] / med["lungmask_command_s"], 3)
        for setting, name in ((BEFORE, "before"), (cpu_default(), "default")):
            entry[f"warm_{name}_over_model_only"] = round(med[f"ours_warm_{name}_s"] / med[f"model_only_{name}_s"], 2)
            peak = ceiling[setting.dtype].get(threads)
            rate = slices * gflops[key[1]] / med[f"model_only_{name}_s"]
            entry[f"model_only_{name}_share_of_ceiling"] = round(rate / peak, 3) if peak else None
        table.append(entry)
    return table


# -------------------------------------------------------------------------------------------------------- model only
def _onnx_seconds(network: nn.Module, batch: torch.Tensor, threads: int, repeats: int, folder: Path) -> float:
    import onnxruntime

    from pipeline.models.export import export_onnx

    path = export_onnx(copy.deepcopy(network).float(), folder / "model.onnx", batch[:1])
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: batch.numpy()}
    return _best_seconds(lambda: session.run(None, feed), repeats)


def model_variants(
    name: str, network: nn.Module, gflop: float, batch: torch.Tensor, ceiling: dict, args: argparse.Namespace
) -> list[dict]:
    """Section 5 for one network: images/s, GFLOP/s and share of the ceiling per precision, layout and threads
    (bfloat16 only where ``args.bf16``)."""
    rows = []
    for threads in args.threads:
        for bf16 in (False, True)[: 1 + args.bf16]:
            for channels_last in (False, True):
                # both layouts set explicitly: the bundles load their weights channels-last on the CPU
                layout = torch.channels_last if channels_last else torch.contiguous_format
                net = copy.deepcopy(network).eval().to(memory_format=layout)
                images = batch.contiguous(memory_format=layout)

                def forward(net: nn.Module = net, images: torch.Tensor = images, bf16: bool = bf16) -> None:
                    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                        net(images)

                with _threads(threads):
                    seconds = _best_seconds(forward, args.timing_repeats)
                rows.append(_rate(name, "bf16" if bf16 else "fp32", channels_last, threads, len(batch), seconds, gflop))
                rows[-1]["share_of_ceiling"] = round(rows[-1]["gflops"] / ceiling[rows[-1]["dtype"]][str(threads)], 3)
        if args.onnx:
            with tempfile.TemporaryDirectory() as folder:
                try:
                    seconds = _onnx_seconds(network, batch, threads, args.timing_repeats, Path(folder))
                except Exception as e:  # an export or runtime failure is a finding, not the end of the run
                    print(f"    {name} onnxruntime threads={threads}: failed: {e}", flush=True)
                    continue
            rows.append(_rate(name, "fp32", False, threads, len(batch), seconds, gflop, runtime="onnxruntime"))
            rows[-1]["share_of_ceiling"] = round(rows[-1]["gflops"] / ceiling["fp32"][str(threads)], 3)
    for row in rows:
        print(
            f"    {name} {row['runtime']} {row['dtype']} channels_last={row['channels_last']} "
            f"threads={row['threads']}: {row['images_per_s']} img/s, {row['gflops']} GFLOP/s, "
            f"{row['share_of_ceiling']:.0%} of the ceiling",
            flush=True,
        )
    return rows


def _rate(
    name: str, dtype: str, channels_last: bool, threads: int, images: int, seconds: float, gflop: float, **extra: str
) -> dict[str, Any]:
    return {
        "network": name,
        "runtime": extra.get("runtime", "torch"),
        "dtype": dtype,
        "channels_last": channels_last,
        "threads": threads,
        "batch_size": images,
        "images_per_s": round(images / seconds, 2),
        "gflops": round(images * gflop / seconds, 1),
    }


def r231_gflop(network: nn.Module) -> float:
    """GFLOP of one R231 forward pass at lungmask's 256 x 256 (PyTorch's counter, as ``bench_gpu.forward_gflop``)."""
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        network(torch.zeros(1, 1, LUNGMASK_SIZE, LUNGMASK_SIZE))
    return counter.get_total_flops() / 1e9


# ---------------------------------------------------------------------------------------------------------- accuracy
def bf16_accuracy(bundle: Bundle, dataset_dir: Path) -> dict[str, Any]:
    """Section 6: our predictor on the validation split in float32 and under bfloat16 autocast (means per slice)."""
    items = split_datalist(load_datalist(dataset_dir))["val"]
    load = LoadSlice()
    images = [{"image": bundle.runner.loader(item["image"])} for item in items]
    truth = [load(item["label"])[0].numpy() > 0 for item in items]
    masks = {}
    for amp in (False, True):
        bundle.use(Setting(amp, channels_last=True))
        tick = time.perf_counter()
        masks[amp] = [m[0].numpy() > 0 for m in bundle.predictor(images)]
        masks[f"{amp}_s"] = time.perf_counter() - tick

    def overlap(a: np.ndarray, b: np.ndarray, dice: bool) -> float:
        both, either = np.logical_and(a, b).sum(), np.logical_or(a, b).sum()
        if not either:
            return 1.0
        return float(2 * both / (a.sum() + b.sum())) if dice else float(both / either)

    pairs = list(zip(masks[False], masks[True], truth, strict=True))
    return {
        "bundle": bundle.name,
        "slices": len(items),
        "iou_fp32": round(statistics.mean(overlap(f, t, dice=False) for f, _, t in pairs), 4),
        "iou_bf16": round(statistics.mean(overlap(b, t, dice=False) for _, b, t in pairs), 4),
        "dice_bf16_vs_fp32": round(statistics.mean(overlap(f, b, dice=True) for f, b, _ in pairs), 5),
        "min_dice_bf16_vs_fp32": round(min(overlap(f, b, dice=True) for f, b, _ in pairs), 5),
        "pixels_differing": int(sum(np.logical_xor(f, b).sum() for f, b, _ in pairs)),
        "fp32_s": round(masks["False_s"], 2),
        "bf16_s": round(masks["True_s"], 2),
    }


# -------------------------------------------------------------------------------------------------------------- main
def _arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--dataset_dir", type=Path, default=None, help="2D CT slices with lung masks (lung_ct)")
    cli.add_argument("--study", type=Path, default=None, help="a DICOM study; each of its series is timed as well")
    cli.add_argument("--work_dir", type=Path, default=Path(tempfile.gettempdir()) / "bench_cpu_lungmask")
    cli.add_argument("--slices", type=int, default=300, help="slices of the phantom series (0: none)")
    cli.add_argument("--size", type=int, default=512, help="rows and columns of the phantom series")
    cli.add_argument("--bundles", nargs="+", default=list(BUNDLES), choices=BUNDLES)
    cli.add_argument("--spatial_size", type=int, default=256, help="our model's input size (lungmask's is 256)")
    cli.add_argument("--checkpoint", action="append", default=[], metavar="BUNDLE=PATH")
    cli.add_argument("--train_epochs", type=int, default=0, help="train each bundle briefly (0: untrained weights)")
    cli.add_argument("--lungmask_weights", type=Path, default=None, help="an R231 state dict instead of training one")
    cli.add_argument("--lungmask_steps", type=int, default=80, help="R231 training steps (about 2 s each on 2 cores)")
    cli.add_argument("--repeats", type=int, default=1, help="side-by-side rounds")
    cli.add_argument("--threads", type=int, nargs="+", default=sorted({1, torch.get_num_threads()}))
    cli.add_argument("--batch_size", type=int, default=8, help="batch of the model-only variants (R231: half)")
    cli.add_argument("--timing_repeats", type=int, default=3, help="timed calls per model-only variant (best kept)")
    cli.add_argument("--matmul_sizes", type=int, nargs="+", default=[2048, 4096], help="the ceiling's square matmuls")
    cli.add_argument("--conv_channels", type=int, default=512, help="channels of the ceiling's 3 x 3 convolution")
    cli.add_argument("--onnx", action="store_true", help="also time ONNX Runtime (float32)")
    cli.add_argument(
        "--emulated_bf16",
        action="store_true",
        help="time bfloat16 (models, accuracy) on a CPU without native bfloat16 too, where it is 2-50 x slower",
    )
    cli.add_argument("--skip", nargs="*", default=[], choices=["side_by_side", "models", "accuracy"])
    args = cli.parse_args(argv)
    for spec in args.checkpoint:
        name, sep, path = spec.partition("=")
        if not sep or name not in BUNDLES or not Path(path).is_file():
            cli.error(f"--checkpoint {spec!r}: expected BUNDLE=PATH with BUNDLE one of {', '.join(BUNDLES)}")
    if args.slices and not args.slices >= 2:
        cli.error(f"--slices must be 0 or at least 2, got {args.slices}")
    if args.study is not None and not args.study.is_dir():
        cli.error(f"--study {args.study}: no such folder")
    if "side_by_side" not in args.skip and not args.slices and args.study is None:
        cli.error("no series to time: --slices 0 and no --study (or skip the section: --skip side_by_side)")
    args.bf16 = native_bf16("cpu") or args.emulated_bf16
    if "side_by_side" not in args.skip and args.lungmask_weights is None and args.dataset_dir is None:
        cli.error("lungmask needs weights: pass --dataset_dir to train R231 briefly, or --lungmask_weights")
    return args


def _ceiling(args: argparse.Namespace) -> dict[str, dict[str, dict[str, float]]]:
    """The ceiling by precision and threads; bfloat16 only where ``args.bf16`` (emulated, a 4096 matmul in bfloat16
    measured 0.3 GFLOP/s with AVX2 alone: minutes a call)."""
    precisions = (("fp32", torch.float32), ("bf16", torch.bfloat16))[: 1 + args.bf16]
    ceiling = {
        name: {str(t): machine_ceiling(dtype, t, args.matmul_sizes, args.conv_channels) for t in args.threads}
        for name, dtype in precisions
    }
    print(f"ceiling, GFLOP/s by threads: {json.dumps(ceiling)}", flush=True)
    return ceiling


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run every section that is not skipped; print the figures and, last, one JSON object."""
    args = _arguments(argv)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"machine": machine(), "settings": {k: str(v) for k, v in vars(args).items()}}
    result["default_setting"] = dataclasses.asdict(cpu_default())
    print(f"machine: {json.dumps(result['machine'])}", flush=True)
    print(f"the bundles' default on this CPU: {json.dumps(result['default_setting'])}", flush=True)
    if not args.bf16:
        print(
            "this CPU has no native bfloat16 (AVX512-BF16 or AMX): the bundles run in float32 here, and the bfloat16 "
            "rows (models, accuracy) are left out; --emulated_bf16 times them anyway (2-50 x slower)",
            flush=True,
        )
    if (args.lungmask_weights or args.dataset_dir) and importlib.util.find_spec("lungmask") is None:
        raise SystemExit('bench_cpu_lungmask: lungmask is not installed: pip install -e ".[bench]"')
    series = []
    if "side_by_side" not in args.skip:  # chosen first: a study with nothing to segment ends the run at once
        series = [phantom_series(args.work_dir, args.slices, args.size)] if args.slices else []
        if args.study is not None:
            try:
                series += study_series(args.study, series_rules(args.bundles[0]), args.work_dir)
            except ValueError as e:
                raise SystemExit(f"bench_cpu_lungmask: {e}") from None
    result["ceiling_runs"] = [_ceiling(args)]

    bundles = [load_bundle(name, args) for name in args.bundles]
    result["checkpoints"] = {b.name: {"path": str(b.checkpoint), "trained": b.trained} for b in bundles}
    sizes = {b.name: int(b.parser.get_parsed_content("spatial_size")[0]) for b in bundles}
    gflops = {name: forward_gflop(name, size) for name, size in sizes.items()}  # bench_gpu's count, one slice
    result["gflop_per_slice"] = {name: round(g, 3) for name, g in gflops.items()}
    weights = args.lungmask_weights
    if weights is None and args.dataset_dir is not None:
        weights = args.work_dir / f"r231_steps{args.lungmask_steps}.pth"
        result["lungmask_training"] = train_r231(args.dataset_dir, weights, steps=args.lungmask_steps)
        print(f"R231 for lungmask: {json.dumps(result['lungmask_training'])}", flush=True)

    if "side_by_side" not in args.skip:
        smallest = min(series, key=lambda s: s.slices).folder
        for bundle in bundles:  # first-call costs (allocator, highdicom's tables, lazy imports) out of the timings
            run_warm(bundle, smallest, BEFORE)
        result["side_by_side_runs"], result["side_by_side_failures"] = side_by_side(series, bundles, weights, args)

    if "models" not in args.skip:
        result["ceiling_runs"].append(_ceiling(args))  # again beside the models: the best of both is the ceiling
    runs = result["ceiling_runs"]
    ceiling = {d: {t: max(max(run[d][t].values()) for run in runs) for t in runs[0][d]} for d in runs[0]}
    result["ceiling_gflops"] = ceiling
    if "side_by_side_runs" in result:
        result["side_by_side"] = summarise(result["side_by_side_runs"], gflops, ceiling)
    if "models" not in args.skip:
        result["models"] = []
        for bundle in bundles:
            size, channels = sizes[bundle.name], int(bundle.parser.get_parsed_content("in_channels"))
            batch = torch.rand(args.batch_size, channels, size, size)
            print(f"{bundle.name}: {gflops[bundle.name]:.2f} GFLOP per {size} px slice", flush=True)
            network = bundle.parser.get_parsed_content("network")
            result["models"] += model_variants(bundle.name, network, gflops[bundle.name], batch, ceiling, args)
        if weights is not None:
            from lungmask.mask import get_model

            r231 = get_model("R231", str(weights))
            gflop = r231_gflop(r231)
            batch = torch.rand(max(1, args.batch_size // 2), 1, LUNGMASK_SIZE, LUNGMASK_SIZE)
            print(f"lungmask R231: {gflop:.2f} GFLOP per 256 px slice", flush=True)
            lean = argparse.Namespace(**{**vars(args), "threads": [max(args.threads)], "onnx": False})
            result["models"] += model_variants("lungmask_r231", r231, gflop, batch, ceiling, lean)

    if "accuracy" not in args.skip and args.dataset_dir is not None and args.bf16:
        result["accuracy"] = [bf16_accuracy(b, args.dataset_dir) for b in bundles if b.trained]
        for row in result["accuracy"]:
            print(f"bf16 against fp32: {json.dumps(row)}", flush=True)

    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
