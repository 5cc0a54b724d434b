"""Atomic checkpoints: a failed or killed save never costs the previous complete file."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from ignite.engine import Engine, Events

from pipeline.atomic import save_atomic
from pipeline.training import AtomicCheckpointSaver


def _state(value: float) -> dict[str, torch.Tensor]:
    return {"weight": torch.full((64, 64), value)}


def test_save_atomic_round_trip(tmp_path):
    path = save_atomic(_state(1.0), tmp_path / "model.pt")
    assert torch.load(path, weights_only=True)["weight"].eq(1.0).all()
    save_atomic(_state(2.0), path)
    assert torch.load(path, weights_only=True)["weight"].eq(2.0).all()
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]  # no temporary file left behind
    assert path.stat().st_mode & 0o044 == 0o044  # readable by group and others, like torch.save


def test_failed_save_keeps_the_previous_file(tmp_path):
    path = save_atomic(_state(1.0), tmp_path / "model.pt")
    with pytest.raises(Exception):  # noqa: B017 - whatever pickle raises for a lambda
        save_atomic({"weight": lambda: None}, path)
    assert torch.load(path, weights_only=True)["weight"].eq(1.0).all()
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def _validation(scores: list[float], network: torch.nn.Linear) -> Engine:
    """An engine whose epochs report ``scores`` as ``val_iou`` and set the weights to the score."""
    engine = Engine(lambda e, b: None)

    @engine.on(Events.EPOCH_COMPLETED)
    def _score(e: Engine) -> None:
        e.state.metrics["val_iou"] = scores[e.state.epoch - 1]
        network.weight.data.fill_(scores[e.state.epoch - 1])

    return engine


def test_best_model_survives_a_failing_save(tmp_path, monkeypatch):
    """MONAI's saver deletes model.pt before writing the new one; this one replaces it once the new one is whole."""
    network = torch.nn.Linear(4, 1)
    saver = AtomicCheckpointSaver(
        save_dir=str(tmp_path / "models"),
        save_dict={"model": network},
        save_key_metric=True,
        key_metric_name="val_iou",
        key_metric_filename="model.pt",
    )
    best = tmp_path / "models" / "model.pt"
    engine = _validation([0.5, 0.6], network)
    saver.attach(engine)
    real_save = torch.save

    def torn_save(obj, f, *args, **kwargs):
        if network.weight[0, 0] == 0.6:
            f.write(b"partial")  # the process dies after writing part of the file
            raise OSError("disk full")
        real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", torn_save)
    with pytest.raises(OSError, match="disk full"):
        engine.run([0], max_epochs=2)
    assert torch.load(best, weights_only=True)["weight"].eq(0.5).all()  # still epoch 1's complete weights
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["model.pt"]

    engine = _validation([0.7], network)  # the next better model replaces it
    saver.attach(engine)
    engine.run([0], max_epochs=1)
    assert torch.load(best, weights_only=True)["weight"].eq(0.7).all()
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["model.pt"]


_WRITER = textwrap.dedent(
    """
    import sys, torch
    from pipeline.atomic import save_atomic
    path = sys.argv[1]
    value = 0.0
    print("ready", flush=True)
    while True:
        value += 1.0
        save_atomic({"weight": torch.full((1024, 1024), value)}, path)  # 4 MB per save
    """
)


@pytest.mark.parametrize("delay", [0.05, 0.13, 0.31])
def test_a_killed_writer_leaves_a_complete_file(tmp_path, delay):
    """SIGKILL at an arbitrary moment of a save loop: the file on disk always loads and holds one whole save."""
    path = tmp_path / "model.pt"
    save_atomic({"weight": torch.zeros(1024, 1024)}, path)
    process = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "ready"
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    weight = torch.load(path, weights_only=True)["weight"]
    assert weight.shape == (1024, 1024) and weight.eq(weight[0, 0]).all()
