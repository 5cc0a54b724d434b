"""Atomic writing: strict JSON, and a file that is either the old one or the new one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline.atomic import atomic_output, write_json


def test_write_json_converts_numpy_and_non_finite(tmp_path):
    obj = {
        "count": np.int64(3),
        "dice": np.float32(0.5),
        "flag": np.bool_(True),
        "shape": (1, 2),
        "array": np.arange(3, dtype=np.uint8),
        "nested": [{"hd95": float("nan"), "inf": np.float64(np.inf)}],
        "where": Path("out/seg.dcm"),
        7: "integer key",
    }
    path = write_json(obj, tmp_path / "sub" / "result.json")
    text = path.read_text()
    assert text.endswith("}\n") and '\n  "count": 3' in text  # indent 2
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}")) == {
        "count": 3,
        "dice": 0.5,
        "flag": True,
        "shape": [1, 2],
        "array": [0, 1, 2],
        "nested": [{"hd95": None, "inf": None}],
        "where": "out/seg.dcm",
        "7": "integer key",
    }


def test_write_json_is_atomic(tmp_path):
    path = write_json({"a": 1}, tmp_path / "r.json")
    with pytest.raises(TypeError):
        write_json({"a": object()}, path)  # not serialisable: the old file must survive
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_atomic_output_keeps_old_file_on_error(tmp_path):
    path = tmp_path / "f.nii.gz"
    path.write_text("old")
    with pytest.raises(RuntimeError), atomic_output(path) as tmp:
        assert tmp.name.endswith(".nii.gz") and tmp.parent == tmp_path
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.nii.gz"]


_FULL_DISK = """
import resource, signal, sys
import torch
from pipeline.atomic import save_atomic, write_json
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG), as on a full disk (ENOSPC)
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
try:
    {call}
except OSError as e:
    print(type(e).__name__, e)
"""


@pytest.mark.parametrize(
    "call, name",
    [
        ("save_atomic({'w': torch.zeros(1 << 20)}, sys.argv[1] + '/model.pt')", "model.pt"),
        ("write_json({'x': 'y' * (1 << 21)}, sys.argv[1] + '/summary.json')", "summary.json"),
    ],
    ids=["checkpoint", "json"],
)
def test_a_write_that_fails_names_the_file_and_the_reason(tmp_path, call, name):
    """A checkpoint save on a full disk ended in torch's "enforce fail at inline_container.cc ... unexpected pos",
    with no file and no reason. The file-size limit makes the same failure here (EFBIG instead of ENOSPC); the error
    names the destination and the operating system's reason, and nothing partial is left."""
    script = _FULL_DISK.replace("{call}", call)
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("OSError [Errno 27] File too large: "), result.stdout
    assert result.stdout.strip().endswith(f"{tmp_path / name}'"), result.stdout
    assert list(tmp_path.iterdir()) == []
