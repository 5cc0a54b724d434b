"""The comparison command: a real two-bundle run on tiny demo data, the report it writes, and its statistics."""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.demo import write_demo_dataset
from pipeline.evaluation import holm, paired_test, run_bundle
from pipeline.evaluation.compare import main
from pipeline.evaluation.comparison_runs import _execute

REPO = Path(__file__).resolve().parents[2]
BUNDLE_ARGS = [
    "--epochs",
    "1",
    "--batch_size",
    "2",
    "--spatial_size",
    "[64,64]",
    "--device",
    "cpu",
    "--num_workers",
    "0",
]


@pytest.fixture(autouse=True)
def _repo_root(monkeypatch):
    monkeypatch.chdir(REPO)


@pytest.mark.parametrize(
    "a, b, mean, p",
    [
        ([0.9, 0.8, 0.7], [0.9, 0.8, 0.7], 0.0, 1.0),  # no difference at all
        ([0.9, float("nan"), 0.7], [0.8, 0.8, 0.6], 0.1, 0.5),  # NaN pairs are left out: 2 pairs, both positive
        ([0.5], [0.4], 0.1, math.nan),  # one pair cannot be tested
        (list(np.linspace(0.8, 0.9, 12)), list(np.linspace(0.8, 0.9, 12) - 0.05), 0.05, 2 / 2**12),  # exact test
    ],
)
def test_paired_test(a, b, mean, p):
    result = paired_test(a, b)
    assert result["mean_difference"] == pytest.approx(mean)
    assert result["p_value"] == pytest.approx(p, nan_ok=True)


@pytest.mark.parametrize(
    "p, expected",
    [
        ([0.01, 0.04, 0.03], [0.03, 0.06, 0.06]),  # sorted: 0.01*3, max(0.03*2, 0.03), max(0.04*1, 0.06)
        ([0.5, math.nan], [0.5, math.nan]),  # NaN is not a test
        ([0.4, 0.3], [0.6, 0.6]),
    ],
)
def test_holm(p, expected):
    assert holm(p) == pytest.approx(expected, nan_ok=True)


@pytest.mark.parametrize(
    "args", [["--output_dir", "x"], ["--flip_tta=true"], ["--epochs", "2", "--fill_holes", "true"]]
)
def test_reserved_args_are_refused(tmp_path, args):
    name = next(a for a in args if a.startswith("--") and a != "--epochs").split("=")[0]
    with pytest.raises(ValueError, match=f"{name} is set by the comparison"):
        run_bundle("unet", "datasets/demo_ct", tmp_path, args)
    assert not (tmp_path / "runs").exists()


def test_finished_runs_are_reused_only_on_the_same_inputs(tmp_path):
    """A real (tiny) command: reused while command and inputs match; run again when an input changes or on force."""
    data = tmp_path / "datalist.json"
    data.write_text("{}")
    folder = tmp_path / "run"
    command = [sys.executable, "-c", f"open({str(folder / 'summary.json')!r}, 'w').write('{{}}')"]
    ran = [_execute(command, [data], folder, "run.log", "tiny", force=False) for _ in range(2)]
    data.write_text('{"training": []}')
    ran.append(_execute(command, [data], folder, "run.log", "tiny", force=False))
    ran.append(_execute(command, [data], folder, "run.log", "tiny", force=True))
    assert ran == [True, False, True, True]
    # an input the command itself creates (the demo data on a first run) is recorded as the run left it
    made = tmp_path / "made.txt"
    summary = tmp_path / "run2" / "summary.json"
    creating = [sys.executable, "-c", f"open({str(made)!r}, 'w').write('x'); open({str(summary)!r}, 'w').write('{{}}')"]
    ran = [_execute(creating, [made], summary.parent, "run.log", "tiny", force=False) for _ in range(2)]
    assert ran == [True, False]
    failing = [sys.executable, "-c", "raise SystemExit('no weights here')"]
    with pytest.raises(RuntimeError, match=r"tiny failed \(exit code 1\)[\s\S]*no weights here"):
        _execute(failing, [data], folder, "run.log", "tiny", force=False)
    assert not (folder / "command.json").exists()  # a failed run is never taken as finished


@pytest.mark.slow
def test_compare_two_bundles(tmp_path, caplog):
    """Train and evaluate two bundles on label maps of three structures, write the report with each structure's table
    and tests; a second call reuses both runs."""
    data = write_demo_dataset(tmp_path / "data", num_cases=8, size=64, val_fraction=0.5, seed=3, label_maps=True)
    out = tmp_path / "report"
    argv = ["--bundles", "unet", "aspp", "--dataset_dir", str(data), "--output_dir", str(out)]
    argv += ["--variants", "plain", "post", "--num_disagreement_cases", "2", *BUNDLE_ARGS]
    report = main(argv)

    text = report.read_text()
    for heading in ("## Models", "## Is the best model significantly better?", "## Flip TTA and post-processing"):
        assert heading in text
    for name in ("training_curves.png", "dice_boxplot.png", "variants.png", "disagreement.png"):
        assert f"]({name})" in text
        with Image.open(out / name) as image:
            assert image.format == "PNG" and min(image.size) > 200
    table = [line for line in text.splitlines() if line.startswith("| unet |") or line.startswith("| aspp |")]
    assert len(table) >= 2 and all("±" in line for line in table[:2])

    rows = list(csv.DictReader((out / "per_case.csv").open()))
    assert len(rows) == 2 * 2 * 4  # models x variants x validation cases
    summary = json.loads((out / "summary.json").read_text())
    for model in ("unet", "aspp"):
        per_image = list(csv.DictReader((out / "runs" / model / "eval_plain" / "per_image.csv").open()))
        mean_dice = np.mean([float(r["dice"]) for r in per_image])
        assert summary["models"][model]["metrics"]["plain"]["dice"]["mean"] == pytest.approx(mean_dice, abs=1e-6)
        assert summary["models"][model]["training"]["num_parameters"] > 0
    assert len(summary["significance"]) == 1 and summary["significance"][0]["n"] == 4
    structures = ("right_lung", "left_lung", "heart")
    assert "## Each structure" in text and all(f"### {s.replace('_', ' ')}" in text for s in structures)
    for model in ("unet", "aspp"):
        per_image = list(csv.DictReader((out / "runs" / model / "eval_plain" / "per_image.csv").open()))
        for structure in structures:
            dice = np.array([float(r[f"dice_{structure}"]) for r in per_image])
            expected = np.mean(dice[np.isfinite(dice)])
            reported = summary["structures"]["metrics"][model][structure]["dice"]["mean"]
            assert reported == pytest.approx(expected, abs=1e-6), (model, structure)
    assert sorted(summary["structures"]["significance"]) == sorted(structures)
    assert all(len(rows) == 1 for rows in summary["structures"]["significance"].values())
    assert len(summary["disagreement"]) == 2

    caplog.clear()
    with caplog.at_level("INFO", logger="pipeline.compare"):
        main(argv)
    assert caplog.text.count("reusing the finished run") == 2 * 3  # training + two evaluations, per bundle


@pytest.mark.slow
def test_a_failed_bundle_is_reported(tmp_path):
    """A bundle that cannot train is listed as failed with its log, the other is still compared, exit code 1."""
    data = write_demo_dataset(tmp_path / "data", num_cases=6, size=64, val_fraction=0.5, seed=4)
    out = tmp_path / "report"
    argv = ["--bundles", "unet", "cenet", "--dataset_dir", str(data), "--output_dir", str(out)]
    argv += ["--variants", "plain", *BUNDLE_ARGS]  # CE-Net cannot take 64 x 64 inputs
    with pytest.raises(SystemExit) as raised:
        main(argv)
    assert raised.value.code == 1
    text = (out / "report.md").read_text()
    assert "**cenet failed**" in text and str(out / "runs" / "cenet") in text
    assert "| unet |" in text


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--epochs", "2", "--spatial_size", "[64,64]"], ["--spatial_size", "[64,64]"]),
        (["--epochs=2", "--flip_tta", "--network_def#a", "[4]"], ["--flip_tta", "--network_def#a", "[4]"]),
        (["--batch_size", "2", "--learning_rate", "-1"], []),
    ],
)
def test_evaluations_get_only_the_arguments_their_config_has(tmp_path, args, expected):
    """Training's own settings (``--epochs``) go to the training only: the evaluation command would refuse them."""
    from pipeline.evaluation.comparison_runs import _args_for

    config = tmp_path / "evaluate.json"
    config.write_text(json.dumps({"spatial_size": [1, 1], "flip_tta": False, "network_def": {}}))
    assert _args_for(config, args) == expected
