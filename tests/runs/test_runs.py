"""Run folders and the ``latest`` pointer."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline.runs import latest_checkpoint, latest_link, new_run_dir, point_latest

NOON = 1_800_000_000.0  # a fixed time stamp


def test_each_run_gets_its_own_folder(tmp_path):
    first = Path(new_run_dir(tmp_path, now=NOON))
    second = Path(new_run_dir(tmp_path, now=NOON))  # same second: numbered
    third = Path(new_run_dir(tmp_path, now=NOON + 61))
    assert first.parent == second.parent == third.parent == tmp_path / "runs"
    assert second.name == f"{first.name}-2" and third.name != first.name
    assert all(p.is_dir() and not any(p.iterdir()) for p in (first, second, third))


def test_latest_points_at_the_run_and_moves_atomically(tmp_path):
    a, b = new_run_dir(tmp_path, now=NOON), new_run_dir(tmp_path, now=NOON + 1)
    (Path(a) / "models").mkdir()
    (Path(a) / "models" / "model.pt").write_text("a")
    link = point_latest(latest_link(tmp_path), a)
    assert link == tmp_path / "latest" and link.is_symlink() and not os.path.isabs(os.readlink(link))
    assert Path(latest_checkpoint(tmp_path)).read_text() == "a"
    point_latest(link, b)
    assert link.resolve() == Path(b).resolve()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "runs"]  # no temporary link left


def test_the_output_folder_can_move(tmp_path):
    run = new_run_dir(tmp_path / "out", now=NOON)
    point_latest(latest_link(tmp_path / "out"), run)
    (tmp_path / "out").rename(tmp_path / "moved")
    assert (tmp_path / "moved" / "latest").resolve() == (tmp_path / "moved" / "runs" / Path(run).name).resolve()


def test_a_folder_named_latest_is_left_alone(tmp_path):
    (tmp_path / "latest").mkdir()
    with pytest.raises(FileExistsError, match="not a link"):
        point_latest(tmp_path / "latest", new_run_dir(tmp_path))
    assert (tmp_path / "latest").is_dir()
