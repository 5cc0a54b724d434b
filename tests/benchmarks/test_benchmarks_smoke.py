"""Each benchmark starts, runs on tiny synthetic data and prints one valid JSON object (the figures are not checked)."""

from __future__ import annotations

import argparse
import importlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
from monai.bundle import ConfigParser
from PIL import Image

from pipeline.demo import write_demo_dataset
from pipeline.demo.study import write_demo_study
from pipeline.inference.autocast import native_bf16

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def _json(command: list[str], cwd: Path) -> dict:
    result = subprocess.run([sys.executable, *command], capture_output=True, text=True, cwd=cwd, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    return write_demo_dataset(tmp_path_factory.mktemp("data"), num_cases=8, size=64, val_fraction=0.25, seed=4)


@pytest.mark.slow
def test_engine_benchmark(tiny_data, tmp_path):
    args = ["--bundle", "unet", "--dataset_dir", str(tiny_data), "--spatial_size", "64", "--epochs", "1"]
    result = _json([str(HERE / "bench_engine.py"), *args, "--device", "cpu"], tmp_path)
    assert result["settings"]["training_images"] == 6 and len(result["training"]["ignite_epoch_s"]) == 1
    assert result["training"]["ignite_over_bare"] > 0 and 0 <= result["data_wait"]["share_median"] <= 1
    assert result["validation"]["images"] == 2


@pytest.mark.slow
def test_recipes_benchmark(tiny_data, tmp_path):
    args = ["--dataset_dir", str(tiny_data), "--output_dir", str(tmp_path / "runs"), "--run", "unet:64:1"]
    result = _json([str(HERE / "bench_recipes.py"), *args, "--device", "cpu", "--num_workers", "0"], tmp_path)
    assert [(r["recipe"], r["exit_code"]) for r in result["runs"]] == [("default", 0), ("seeds", 0)]
    assert all(0 <= r["best_val_iou"] <= 1 for r in result["runs"])


@pytest.mark.slow
def test_study_benchmark(tmp_path):
    study = write_demo_study(tmp_path / "study", size=64, num_slices=4)
    parser = ConfigParser()
    parser.read_config(REPO / "bundles" / "unet" / "train.json")
    weights = tmp_path / "model.pt"
    torch.save(parser.get_parsed_content("network_def").state_dict(), weights)
    args = ["--bundle", "unet", "--input", str(study), "--checkpoint", str(weights), "--spatial_size", "64"]
    result = _json([str(HERE / "bench_study_inference.py"), *args, "--device", "cpu", "--repeats", "1"], tmp_path)
    assert result["settings"]["slices"] == 8
    assert all(result[mode]["end_to_end_over_model_only"] > 0 for mode in ("sequential", "overlapped"))


@pytest.mark.slow
def test_memory_benchmark(tmp_path):
    args = ["--sizes", "10", "20", "--size", "64", "--disk_sizes", "10"]
    result = _json([str(HERE / "bench_memory.py"), *args], tmp_path)
    rows = {(r["slices"], r["cache"]): r for r in result["rows"]}
    assert set(rows) == {(10, "compact"), (20, "compact"), (10, "float32"), (20, "float32"), (10, "disk")}
    assert (
        rows[(10, "disk")]["disk_cache_mib"] > 0
        and rows[(10, "disk")]["cache_mib"] < rows[(10, "compact")]["cache_mib"]
    )
    # what the caches hold is exact: float16 images and masks in training, uint8 masks in validation
    assert rows[(20, "compact")]["cache_mib"] < rows[(20, "float32")]["cache_mib"] / 1.8
    assert set(result["linear_fit"]) == {"compact", "float32"}


@pytest.mark.slow
def test_inference_memory_benchmark(tmp_path):
    args = ["--counts", "6", "--size", "64", "--overlap", "true"]
    result = _json([str(HERE / "bench_inference_memory.py"), *args], tmp_path)
    (row,) = result["rows"]
    assert row["images"] == row["ok"] == 6 and row["overlap"] is True and row["peak_rss_mib"] > 0


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None, reason="torchrun is not installed"
)
def test_scaling_benchmark(tmp_path):
    args = ["--cases", "8", "--spatial_size", "64", "--epochs", "2", "--batch_size", "2", "--repeats", "1"]
    result = _json([str(HERE / "bench_scaling.py"), *args], tmp_path)
    assert set(result["processes"]) == {"1", "2"} and result["processes"]["2"]["batch_per_process"] == 1
    assert result["speedup"] > 0 and len(result["processes"]["1"]["epoch_s"]) == 1


@pytest.mark.slow
def test_gpu_benchmark_runs_on_the_cpu(tmp_path):
    args = ["--bundle", "unet", "--spatial_size", "64", "--batch_size", "2", "--steps", "1", "--warmup", "1"]
    result = _json([str(HERE / "bench_gpu.py"), *args, "--variants", "fp32", "bf16", "--device", "cpu"], tmp_path)
    assert [r["variant"] for r in result["variants"]] == ["fp32", "bf16"]
    assert all(r["train_images_per_s"] > 0 and r["inference_images_per_s"] > 0 for r in result["variants"])
    assert result["settings"]["forward_gflop_per_image"] > 0 and result["batch_fill"]["rows"] == []


@pytest.mark.slow
def test_many_labels_benchmark(tmp_path):
    args = ["--structures", "3", "--count", "5", "--spatial_size", "64", "--epochs", "1"]  # one K: the smoke only
    result = _json([str(HERE / "bench_many_labels.py"), *args], tmp_path)
    (row,) = result["results"]
    assert row["out_channels"] == 4 and row["cached_item_bytes"] == 64 * 64 * (1 + 4) * 2  # float16 image + targets
    assert row["train"]["peak_rss_mib"] > 0 and row["inference"]["peak_rss_mib"] > 0


def _polyp_frames(root: Path, count: int = 10, size: int = 80) -> Path:
    """RGB ``images/*.jpg`` with a brighter disk, and its ``masks/*.png``; two polyps small (under 2 % of the frame)."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rows, cols = np.mgrid[:size, :size]
    for k in range(count):
        radius = 4 if k < 2 else 14
        disk = (rows - 40) ** 2 + (cols - 30 - k) ** 2 <= radius**2
        frame = rng.normal((150, 60, 50), 12, (size, size, 3))
        frame[disk] += (60, 90, 20)
        Image.fromarray(np.clip(frame, 0, 255).astype(np.uint8)).save(root / "images" / f"frame{k}.jpg")
        Image.fromarray((disk * 255).astype(np.uint8)).save(root / "masks" / f"frame{k}.png")
    return root


@pytest.mark.slow
def test_polyps_benchmark(tmp_path):
    data = _polyp_frames(tmp_path / "polyps")
    args = ["--dataset_dir", str(data), "--output_dir", str(tmp_path / "runs")]
    args += ["--run", "unet:64:1:colour:colour_augmentation=false"]
    result = _json([str(HERE / "bench_polyps.py"), *args, "--device", "cpu", "--num_workers", "0"], tmp_path)
    (run,) = result["runs"]
    assert run["recipe"] == "colour, colour_augmentation=false"
    assert Path(run["output_dir"]).name == "unet_64_1_colour_colour_augmentation-false"
    assert (run["training_exit"], run["evaluation_exit"]) == (0, 0) and (run["modality"], run["in_channels"]) == (
        "OT",
        3,
    )
    assert run["frames"] == 2 and 0 <= run["dice"] <= 1 and run["small_frames"] <= run["frames"]


@pytest.mark.slow
def test_cpu_training_benchmark(tmp_path):
    """float32 against bfloat16 training, one tiny run each on the demo data: both finish and report their figures."""
    # enough slices that an epoch's training outlasts the log's 0.1 s resolution beside its validation
    data = write_demo_dataset(tmp_path / "data", num_cases=40, size=64, val_fraction=0.1, seed=3)
    args = ["--dataset_dir", str(data), "--output_dir", str(tmp_path / "runs"), "--epochs", "1", "--batch_size", "2"]
    args += ["--step_size", "64", "--", "--spatial_size", "[64,64]", "--batch_size", "2", "--num_workers", "0"]
    result = _json([str(HERE / "bench_cpu_training.py"), *args, "--device", "cpu"], tmp_path)
    assert set(result["steps_alone"]["unet"]) == {"fp32", "bf16"}
    rows = {row["precision"]: row for row in result["rows"]}
    assert set(rows) == {"fp32", "bf16"} and all("error" not in row for row in rows.values())
    assert all(row["images_per_s"] > 0 and 0 <= row["val_iou"] <= 1 and row["epochs"] == 1 for row in rows.values())


def test_cpu_lungmask_benchmark(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(HERE))  # the benchmark imports its neighbours, as when run as a script
    bench = importlib.import_module("bench_cpu_lungmask")
    with pytest.raises(SystemExit):  # lungmask needs weights: a folder to train them on, or a state dict
        bench._arguments([])
    with pytest.raises(SystemExit):
        bench._arguments(["--lungmask_weights", "w.pth", "--checkpoint", "unet"])  # not BUNDLE=PATH
    # the small path, which needs neither lungmask (the "bench" extra) nor data: the ceiling and the model-only
    # variants of an untrained unet
    args = ["--work_dir", str(tmp_path / "work"), "--bundles", "unet", "--spatial_size", "64", "--matmul_sizes", "128"]
    args += ["--conv_channels", "16"]
    args += ["--skip", "side_by_side", "--threads", "1", "--batch_size", "1", "--timing_repeats", "1"]
    result = _json([bench.__file__, *args], tmp_path)
    dtypes = ("fp32", "bf16") if native_bf16("cpu") else ("fp32",)  # emulated bfloat16 only on request
    assert set(result["ceiling_gflops"]) == set(dtypes) and result["checkpoints"]["unet"]["trained"] is False
    rows = [(r["network"], r["dtype"], r["channels_last"]) for r in result["models"]]
    assert rows == [("unet", dtype, layout) for dtype in dtypes for layout in (False, True)]
    assert result["default_setting"] == {"amp": native_bf16("cpu"), "channels_last": True}
    assert all(r["images_per_s"] > 0 and r["share_of_ceiling"] > 0 for r in result["models"])


def test_cpu_lungmask_benchmark_series(tmp_path, monkeypatch, capsys):
    """The series both tools time are the ones our inference selects, each alone in a folder, whatever the export's
    layout: here every file of the demo study flat in one folder, without extensions, beside its localizer."""
    monkeypatch.syspath_prepend(str(HERE))
    bench = importlib.import_module("bench_cpu_lungmask")
    study = write_demo_study(tmp_path / "study", size=64, num_slices=3, seed=3)
    flat = tmp_path / "flat"
    flat.mkdir()
    for k, file in enumerate(sorted(study.rglob("*.dcm"))):
        shutil.copy(file, flat / f"IM{k:04d}")
    series = bench.study_series(flat, bench.series_rules("unet"), tmp_path / "work")
    assert [s.slices for s in series] == [3, 3]  # both axial series; the localizer is left out
    assert "left out" in capsys.readouterr().out
    for s in series:
        files = sorted(s.folder.iterdir())
        assert len(files) == s.slices and all(f.is_symlink() and f.resolve().parent == flat for f in files)
        assert len({pydicom.dcmread(f, stop_before_pixels=True).SeriesInstanceUID for f in files}) == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no DICOM series"):
        bench.study_series(empty, bench.series_rules("unet"), tmp_path / "work")
    with pytest.raises(SystemExit):
        bench._arguments(["--lungmask_weights", "w.pth", "--study", str(tmp_path / "missing")])
    with pytest.raises(SystemExit):  # nothing to time side by side
        bench._arguments(["--lungmask_weights", "w.pth", "--slices", "0"])
    monkeypatch.setattr(bench.importlib.util, "find_spec", lambda name: None)  # lungmask missing: said at once
    with pytest.raises(SystemExit, match=r"lungmask is not installed: pip install"):
        bench.main(["--lungmask_weights", "w.pth", "--work_dir", str(tmp_path / "work"), "--skip", "models"])


def test_cpu_lungmask_benchmark_goes_on_after_a_failure(tmp_path, monkeypatch, capsys):
    """A flagged result (exit status 3) is timed like any other; a series a tool fails on is left out with the reason,
    and the run goes on."""
    monkeypatch.syspath_prepend(str(HERE))
    bench = importlib.import_module("bench_cpu_lungmask")
    assert bench._timed_command([sys.executable, "-c", "raise SystemExit(3)"], accept=(0, 3)) > 0
    with pytest.raises(RuntimeError, match="exited 3"):
        bench._timed_command([sys.executable, "-c", "raise SystemExit(3)"])
    folder = tmp_path / "series"
    folder.mkdir()
    series = [bench.Series(folder, 2), bench.Series(folder, 2)]
    rows, failures = bench.side_by_side(series, [], tmp_path / "missing.pth", argparse.Namespace(repeats=1))
    assert rows == [] and [f["tool"] for f in failures] == ["lungmask", "lungmask"]  # both series tried
    assert capsys.readouterr().out.count("lungmask failed, left out") == 2


@pytest.mark.parametrize(
    "native, emulated, dtypes",
    [(True, False, ["fp32", "bf16"]), (False, False, ["fp32"]), (False, True, ["fp32", "bf16"])],
)
def test_cpu_lungmask_benchmark_bf16_only_where_native(monkeypatch, native, emulated, dtypes):
    """On a CPU without native bfloat16 (emulated: 2-50 x slower) the bfloat16 rows are left out unless asked for."""
    monkeypatch.syspath_prepend(str(HERE))
    bench = importlib.import_module("bench_cpu_lungmask")
    monkeypatch.setattr(bench, "native_bf16", lambda device="cpu": native)
    args = bench._arguments(
        ["--skip", "side_by_side", "--threads", "1", "--timing_repeats", "1"] + ["--emulated_bf16"] * emulated
    )
    assert args.bf16 is (native or emulated)
    args.matmul_sizes, args.conv_channels = [64], 8
    assert list(bench._ceiling(args)) == dtypes  # no emulated bfloat16 matmuls for the ceiling either
    ceiling = {"fp32": {"1": 1.0}, "bf16": {"1": 1.0}}
    network = torch.nn.Conv2d(1, 2, 3, padding=1)
    rows = bench.model_variants("conv", network, 1e-4, torch.rand(1, 1, 16, 16), ceiling, args)
    assert [r["dtype"] for r in rows] == [d for d in dtypes for _ in (False, True)]  # each in both layouts


def test_pacs_benchmark(tmp_path, monkeypatch, skip_unless_installed):
    monkeypatch.syspath_prepend(str(REPO / "tests" / "pacs"))
    skip_unless_installed(importlib.import_module("orthanc_server").orthanc_missing(), "PACS", "PIPELINE_REQUIRE_PACS")
    write_demo_study(tmp_path / "study", size=64, num_slices=4, seed=3)
    result = _json([str(HERE / "bench_pacs.py"), "--input", str(tmp_path / "study"), "--repeats", "1"], tmp_path)
    variants = ("file_path", "dicomweb_round_trip", "dicomweb_to_dimse", "listener")
    assert all(result[name]["median_s"] > 0 for name in variants) and result["settings"]["instances"] == 9


@pytest.mark.slow
def test_distributed_exit_probe(tmp_path):
    if shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("torchrun is not installed beside this Python")
    result = _json([str(HERE / "probe_distributed_exit.py"), "--runs", "1", "--load", "1"], tmp_path)
    assert {name: counts["runs"] for name, counts in result["variants"].items()} == {"finish": 1, "barrier": 1}
    assert result["variants"]["finish"]["ok"] == 1  # the bundles' way of ending never aborts; "barrier" may
