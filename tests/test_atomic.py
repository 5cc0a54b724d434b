"""Atomic writing: strict JSON, and a file that is either the old one or the new one."""

from __future__ import annotations

import json
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
