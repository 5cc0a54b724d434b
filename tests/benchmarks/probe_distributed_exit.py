"""Probe (not a test): how often a 2-process ``torchrun`` on the CPU aborts at exit, with each way of ending it.

A gloo worker thread lets go of a finished collective a moment after the caller sees it finish. When the interpreter
has already begun to shut down as that thread frees a tensor Python made, the thread cannot take the GIL and the
process aborts ("terminate called without an active exception", SIGABRT), which fails the whole ``torchrun``. It takes
a loaded machine: the thread must lose its core for the few milliseconds the interpreter needs to start shutting down.

Each run is one ``torchrun --nproc_per_node=2`` of this file's worker: a DistributedDataParallel network trains three
steps, then tensors and objects are gathered as the metric handlers and the run folder do, then the process group is
closed by one of the variants and the processes exit. ``--load`` busy processes share the cores meanwhile. Variants:

* ``finish``: :func:`pipeline.distributed.finish`, as every bundle's ``finalize`` calls it;
* ``barrier``: ``dist.barrier()`` then ``dist.destroy_process_group()`` (what ``finish`` did before 2026-12-05).

Prints one JSON object (the last line of standard output): per variant, runs, aborts (SIGABRT in a rank) and other
failures. Run from the repository root::

    python tests/benchmarks/probe_distributed_exit.py --runs 40 --load 4
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

VARIANTS = ("finish", "barrier")


def _worker(variant: str) -> None:
    """One rank: train, gather, then end the process group as ``variant`` does."""
    import torch
    import torch.distributed as dist
    from torch import nn

    from pipeline import distributed

    distributed.start(True, "cpu")
    network = distributed.wrap(nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Conv2d(8, 1, 3)), "cpu")
    optimizer = torch.optim.SGD(network.parameters(), lr=0.1)
    for _ in range(3):
        loss = network(torch.rand(2, 1, 16, 16)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    for _ in range(3):
        gathered = [torch.zeros(4) for _ in range(distributed.world_size())]
        dist.all_gather(gathered, torch.rand(4))  # as MONAI's metric handlers gather
        distributed.all_gather({"metric": 1.0})
    if variant == "finish":
        distributed.finish()
    else:
        dist.barrier()
        dist.destroy_process_group()


def _busy() -> None:
    """One core's worth of matrix products (memory traffic as well as arithmetic, like a test suite's load)."""
    import torch

    torch.set_num_threads(1)
    matrix = torch.rand(512, 512)
    while True:
        matrix @ matrix


def _run(variant: str, torchrun: str) -> str:
    """``ok``, ``abort`` (a rank died of SIGABRT) or ``failed`` (any other failure, a run past 5 minutes included)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    command = [torchrun, "--standalone", "--nproc_per_node=2", __file__, "--worker", variant]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    except subprocess.TimeoutExpired:
        return "failed"
    if result.returncode == 0:
        return "ok"
    output = result.stdout + result.stderr
    return "abort" if "SIGABRT" in output or "terminate called" in output else "failed"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=40, help="torchrun runs per variant, interleaved")
    parser.add_argument("--load", type=int, default=4, help="busy processes sharing the cores during the runs")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args.worker)
        return
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    counts = {variant: {"runs": 0, "ok": 0, "abort": 0, "failed": 0} for variant in args.variants}
    load = [multiprocessing.Process(target=_busy, daemon=True) for _ in range(args.load)]
    for process in load:
        process.start()
    start = time.perf_counter()
    try:
        for _ in range(args.runs):
            for variant in args.variants:
                outcome = _run(variant, torchrun)
                counts[variant]["runs"] += 1
                counts[variant][outcome] += 1
    finally:
        for process in load:
            process.terminate()
    print(
        json.dumps(
            {
                "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
                "settings": {"runs": args.runs, "load": args.load, "processes": 2, "backend": "gloo"},
                "variants": counts,
                "seconds": round(time.perf_counter() - start, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
