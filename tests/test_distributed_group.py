"""``pipeline.distributed`` in this process: a real gloo process group of one, opened, used and closed as the bundles
do (``tests/bundles/test_distributed.py`` runs two processes under ``torchrun``)."""

from __future__ import annotations

import socket

import pytest
import torch
import torch.distributed as dist

from pipeline import distributed


@pytest.fixture
def torchrun_env(monkeypatch):
    """What ``torchrun`` sets for a single process, on a free port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for name, value in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MASTER_PORT", str(port))
    yield
    if dist.is_initialized():
        dist.destroy_process_group()


def test_without_the_distributed_setting_nothing_opens():
    assert distributed.start(False) is False
    assert not dist.is_initialized() and distributed.world_size() == 1 and distributed.is_rank0()
    distributed.finish()  # nothing to close


def test_finish_closes_the_group_after_gathers(torchrun_env):
    assert distributed.start(True, "cpu") is True
    assert distributed.world_size() == 1 and distributed.is_rank0() and distributed.shard() == (0, 1)
    gathered = [torch.zeros(3)]
    dist.all_gather(gathered, torch.arange(3.0))  # tensors Python made, as the metric handlers gather them
    assert torch.equal(gathered[0], torch.arange(3.0))
    assert distributed.all_gather({"dice": 0.5}) == [{"dice": 0.5}]
    assert distributed.from_rank0(lambda: "run-1") == "run-1"

    distributed.finish()

    assert not dist.is_initialized() and distributed.world_size() == 1
    distributed.finish()  # a second call has nothing left to close
