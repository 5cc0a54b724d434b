"""Through the real inference command, with real trained weights (the fixture CT model): inputs that cannot be what
the model was trained on are refused with a message naming the file and the override, ``--force_input`` segments
them flagged, and the exit status tells all ok (0), some flagged (3) and some failed (1) apart."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from pipeline.inference import EXIT_FLAGGED

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests" / "data" / "binary_model_964005e"
SMALL_UNET = "[4,8,16,32,64]"  # how the fixture was trained (its README)


def _inputs(folder: Path, kinds: list[str]) -> Path:
    folder.mkdir()
    hu = tifffile.imread(FIXTURE / "images" / "case_0002.tif").astype(np.float32)
    for kind in kinds:
        if kind == "ct":
            shutil.copyfile(FIXTURE / "images" / "case_0002.tif", folder / "ct.tif")
        elif kind == "8-bit":  # the same slice exported to PNG in the lung window
            png = np.clip((hu + 1000) / 1400 * 255, 0, 255).round().astype(np.uint8)
            Image.fromarray(png).save(folder / "export.png")
        elif kind == "constant":
            tifffile.imwrite(folder / "blank.tif", np.full(hu.shape, -1000, np.int16))
    return folder


def _infer(tmp_path: Path, inputs: Path, *args: str) -> subprocess.CompletedProcess:
    command = [
        sys.executable, "-m", "monai.bundle", "run", "inference",
        "--config_file", str(REPO / "bundles" / "unet" / "inference.json"),
        "--checkpoint", str(FIXTURE / "model.pt"), "--network_def#channels", SMALL_UNET,
        "--input", str(inputs), "--output_dir", str(tmp_path / "out"), "--device", "cpu", *args,
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=600)


@pytest.mark.parametrize(
    "kinds, args, rc, statuses, words",
    [
        (["ct"], [], 0, {"ct": "ok"}, []),
        (
            ["ct", "8-bit", "constant"],
            [],
            1,
            {"ct": "ok", "export": "failed", "blank": "failed"},
            [
                "export.png: values 0 to",
                "(an 8-bit export?)",
                "Hounsfield units",
                "--force_input true",
                "blank.tif: every pixel is -1000 (a constant image)",
            ],
        ),
        (
            ["ct", "8-bit"],
            ["--force_input", "true"],
            EXIT_FLAGGED,
            {"ct": "ok", "export": "flagged"},
            ["flagged: refused without --force_input: values 0 to"],
        ),
    ],
    ids=["a CT slice", "an 8-bit export and a constant image", "forced"],
)
def test_the_command_refuses_flags_and_says_so_in_its_exit_status(tmp_path, kinds, args, rc, statuses, words):
    result = _infer(tmp_path, _inputs(tmp_path / "in", kinds), *args)
    output = result.stdout + result.stderr
    assert result.returncode == rc, output[-3000:]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    found = {r["input"].split("_", 1)[-1]: r["status"] for r in summary["inputs"]}
    assert found == statuses, summary["inputs"]
    assert summary["num_flagged"] == sum(s == "flagged" for s in statuses.values())
    for word in words:
        assert word in output, (word, output[-3000:])
    assert "Traceback" not in result.stderr
    written = sorted(p.name for p in (tmp_path / "out" / "images").glob("*_mask.png"))
    expected = sorted(name for name, s in statuses.items() if s != "failed")
    assert len(written) == len(expected), written
    assert all(w.endswith(f"{e}_mask.png") for w, e in zip(written, expected, strict=True)), written
