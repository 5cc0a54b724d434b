"""Run folders and the ``latest`` pointer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.training import snapshot_interval, tracking_uri
from pipeline.training.run_folders import (
    RunInUseError,
    default_output_dir,
    latest_checkpoint,
    latest_link,
    lock_run_dir,
    new_run_dir,
    open_run_dir,
    point_latest,
    resume_run_dir,
    run_name,
    unlock_run_dir,
)

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


def _run(output_dir: Path, name: str, status: str | None, checkpoint: bool = True) -> Path:
    run = output_dir / "runs" / name
    run.mkdir(parents=True)
    if status is not None:
        (run / "summary.json").write_text(json.dumps({"status": status}))
    if checkpoint:
        (run / "checkpoint.pt").write_bytes(b"state")
    return run


@pytest.mark.parametrize(
    "runs, expected",
    [
        ([("20260101-000000", "failed", True)], "20260101-000000"),
        ([("20260101-000000", "running", True), ("20260102-000000", "finished", True)], "20260101-000000"),
        ([("20260101-000000", "interrupted", True), ("20260102-000000", "running", True)], "20260102-000000"),
        ([("20260101-000000", "failed", True), ("20260102-000000", None, True)], "20260102-000000"),  # no summary yet
        ([("20260101-000000", "failed", True), ("20260102-000000", "running", False)], "20260101-000000"),
        ([("20260101-000000", "stopped_early", True)], None),
        ([], None),
    ],
)
def test_resume_picks_the_newest_unfinished_run(tmp_path, runs, expected):
    for name, status, checkpoint in runs:
        _run(tmp_path, name, status, checkpoint)
    if expected is None:
        with pytest.raises(FileNotFoundError, match="no unfinished run"):
            resume_run_dir(tmp_path)
    else:
        assert Path(resume_run_dir(tmp_path)).name == expected


def test_a_run_that_cannot_publish_latest_still_finishes(tmp_path, caplog):
    """A folder named latest in the way (or a file system without links): the run ends finished, with a warning."""
    from ignite.engine import Engine

    from pipeline.training import TrainingReport

    (tmp_path / "latest").mkdir()
    run = Path(new_run_dir(tmp_path))
    trainer = Engine(lambda engine, batch: {"loss": 1.0})
    TrainingReport(run, progress_bar=False, latest_link=latest_link(tmp_path)).attach(trainer)
    trainer.run([0], max_epochs=1)
    assert json.loads((run / "summary.json").read_text())["status"] == "finished"
    assert any("could not point" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    "model, fold, expected",
    [("cenet", None, "outputs/cenet"), ("unet", 0, "outputs/unet/fold0"), ("aspp", 3, "outputs/aspp/fold3")],
)
def test_default_output_dir(model, fold, expected):
    assert default_output_dir(model, fold) == expected


def test_open_run_dir_starts_or_resumes(tmp_path):
    first = open_run_dir(tmp_path, resume="false")
    assert Path(first).parent == tmp_path / "runs" and run_name(first) == Path(first).name
    (Path(first) / "checkpoint.pt").write_bytes(b"")
    (Path(first) / "summary.json").write_text(json.dumps({"status": "failed"}))
    assert open_run_dir(tmp_path, resume="true") == first
    with pytest.raises(ValueError, match="--resume must be true or false"):
        open_run_dir(tmp_path, resume="later")


def test_tracking_uri_is_an_sqlite_file_in_the_run(tmp_path):
    assert tracking_uri(tmp_path / "runs" / "r1") == f"sqlite:///{(tmp_path / 'runs' / 'r1' / 'mlruns.db').resolve()}"


@pytest.mark.parametrize("schedule, cycle, expected", [("cosine", 10, 10), ("warmup_cosine", 10, 0), ("plateau", 5, 0)])
def test_snapshots_only_for_the_cosine_schedule(schedule, cycle, expected):
    assert snapshot_interval(schedule, cycle) == expected


def test_a_run_being_trained_is_refused_to_a_second_process(tmp_path):
    """Another process trains in the run folder (it holds the lock until it ends): --resume is refused with that
    process and its start time; once it has ended, the folder can be taken."""
    run = Path(new_run_dir(tmp_path))
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pipeline.training.run_folders import lock_run_dir; "
         "lock_run_dir(sys.argv[1]); print('locked', flush=True); time.sleep(60)", str(run)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        message = rf"is being trained by another process \(process {holder.pid}, started"
        with pytest.raises(RunInUseError, match=message):
            lock_run_dir(run)
    finally:
        holder.kill()
        holder.wait()
    assert lock_run_dir(run) == str(run)


def test_a_finished_training_releases_its_run_folder(tmp_path):
    """A process that goes on after its training (a notebook) unlocks the folder, so a later --resume elsewhere can
    take it; until then another process is refused."""
    run = lock_run_dir(new_run_dir(tmp_path))
    take = "import sys; from pipeline.training.run_folders import lock_run_dir; lock_run_dir(sys.argv[1])"
    other = subprocess.run([sys.executable, "-c", take, run], capture_output=True, text=True, timeout=120)
    assert other.returncode != 0 and "is being trained by another process" in other.stderr
    unlock_run_dir(run)
    other = subprocess.run([sys.executable, "-c", take, run], capture_output=True, text=True, timeout=120)
    assert other.returncode == 0, other.stderr[-2000:]
