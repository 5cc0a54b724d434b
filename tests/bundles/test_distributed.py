"""``torchrun`` + ``multi_gpu_train.json`` on the CPU (gloo, 2 processes): one set of outputs, ranks in step, and the
same weights as one process with the whole batch; ``multi_gpu_inference.json``: every input segmented once, one
summary."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigWorkflow

from pipeline.demo import write_demo_dataset
from pipeline.demo.study import write_demo_study

REPO = Path(__file__).resolve().parents[2]
OVERLAY = REPO / "bundles" / "common" / "multi_gpu_train.json"
INFERENCE_OVERLAY = REPO / "bundles" / "common" / "multi_gpu_inference.json"
TORCHRUN = shutil.which("torchrun", path=str(Path(sys.executable).parent))
pytestmark = [
    pytest.mark.skipif(TORCHRUN is None, reason="torchrun is not installed beside this Python"),
    pytest.mark.slow,  # 2-process runs, 12 to 40 s a test
]

# every process saves its own final weights, so that the test can compare them (MONAI runs "finalize" last)
RANK_WEIGHTS = {
    "finalize": [
        "$torch.save(@network_def.state_dict(), @output_dir + '/rank%d.pt' % torch.distributed.get_rank())",
        "$pipeline.distributed.finish()",
    ]
}
# no batch statistics, no randomness, the same sample order: 2 x batch b/2 must equal 1 x batch b. Plain SGD: Adam's
# first steps move each weight by about lr * sign(gradient), which turns float32 rounding in gradients near zero into
# differences of lr (2e-4 after 2 steps was measured with Adam); SGD passes the gradient through as it is.
EQUIVALENT = {
    "network_def": {
        "_target_": "monai.networks.nets.UNet", "spatial_dims": 2, "in_channels": 1, "out_channels": 1,
        "channels": [8, 16, 32], "strides": [2, 2], "num_res_units": 1, "norm": "instance",
    },
    "train#augmentation": [],
    "extra_augmentation": False,
    "output_bias": False,
    "lr_schedule": "constant",
    "train#dataloader#shuffle": False,
    "optimizer": {"_target_": "torch.optim.SGD", "params": "$@network.parameters()", "lr": 0.1},
    "amp": False,  # float32, so that batches of 2 and of 4 differ by float32 rounding only (bfloat16: about 1e-4)
}  # fmt: skip


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return write_demo_dataset(tmp_path_factory.mktemp("ddp"), num_cases=6, size=64, val_fraction=0.34, seed=11)


def _launch(command: list[str], out: Path) -> subprocess.CompletedProcess:
    """Run ``command`` with one thread per process and Python's fault handler on, so that a process that aborts says
    where it was (:func:`_output`)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1"}
    return subprocess.run(command, cwd=out.parent, capture_output=True, text=True, timeout=600, env=env)


def _output(result: subprocess.CompletedProcess) -> str:
    """What a failed command printed: the fault handler's report of a process that aborted, if any, and the end."""
    text = result.stdout + result.stderr
    fault = text.find("Fatal Python error")
    return (text[fault : fault + 5000] + "\n[...]\n" if fault >= 0 else "") + text[-3000:]


def _train(
    configs: list[Path],
    dataset: Path,
    out: Path,
    processes: int,
    batch_size: int,
    epochs: int = 2,
    resume: bool = False,
) -> subprocess.CompletedProcess:
    files = "[" + ",".join(f"'{c}'" for c in configs) + "]"
    launcher = [TORCHRUN, "--standalone", f"--nproc_per_node={processes}"] if processes > 1 else [sys.executable]
    command = [
        *launcher, "-m", "monai.bundle", "run", "training", "--config_file", files,
        "--dataset_dir", str(dataset), "--output_dir", str(out), "--epochs", str(epochs),
        "--batch_size", str(batch_size), "--spatial_size", "[64,64]", "--num_workers", "0", "--device", "cpu",
        "--resume", str(resume).lower(),
    ]  # fmt: skip
    return _launch(command, out)


def _write(path: Path, content: dict) -> Path:
    path.write_text(json.dumps(content))
    return path


def test_two_processes_write_one_run_in_step(dataset, tmp_path):
    train = REPO / "bundles" / "unet" / "train.json"
    extra = _write(tmp_path / "rank_weights.json", RANK_WEIGHTS)
    result = _train([train, OVERLAY, extra], dataset, tmp_path / "out", processes=2, batch_size=1)
    assert result.returncode == 0, _output(result)
    runs = list((tmp_path / "out" / "runs").iterdir())
    assert len(runs) == 1  # one run folder, chosen by process 0
    summary = json.loads((runs[0] / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["epochs_run"] == 2
    events = list((runs[0] / "logs").glob("events.*"))
    assert len(events) == 3 and len({p.name.split(".")[-2] for p in events}) == 1  # 3 writers, all of process 0
    rank0, rank1 = (torch.load(tmp_path / "out" / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)  # DDP kept the processes' weights identical
    best = torch.load(runs[0] / "models" / "model_final.pt", weights_only=True)
    assert best.keys() == rank0.keys()  # saved without DDP's "module." prefix: inference loads it as it is
    assert all(torch.equal(best[k], rank0[k]) for k in best)
    card = json.loads((runs[0] / "models" / "model.json").read_text())
    assert card["network"] == "monai.networks.nets.unet.UNet"
    lines = result.stdout.splitlines()
    assert sum("pipeline.training: epoch 2/2  loss" in line for line in lines) == 1  # process 0 reports
    assert sum("pre-flight check of 6 pairs" in line for line in lines) == 1  # process 0 reads the data, once


def _train_here(configs: list[Path], dataset: Path, out: Path, batch_size: int, epochs: int = 2) -> Path:
    """:func:`_train` with one process, as this process (a command costs MONAI's import): the run folder."""
    workflow = ConfigWorkflow(
        config_file=[str(c) for c in configs], workflow_type="train", run_id="training", logging_file=False,
        dataset_dir=str(dataset), output_dir=str(out), epochs=epochs, batch_size=batch_size, spatial_size=[64, 64],
        num_workers=0, device="cpu", resume="false",
    )  # fmt: skip
    workflow.initialize()
    workflow.run()
    workflow.finalize()
    (run,) = (out / "runs").iterdir()
    return run


def test_two_half_batches_equal_one_whole_batch(dataset, tmp_path):
    train = REPO / "bundles" / "unet" / "train.json"
    equivalent = _write(tmp_path / "equivalent.json", EQUIVALENT)
    one = _train_here([train, equivalent], dataset, tmp_path / "one", batch_size=4)  # the reference: one process
    assert json.loads((one / "summary.json").read_text())["status"] == "finished"
    sampler = _write(tmp_path / "ordered.json", {"train#sampler#shuffle": False})
    two = _train([train, equivalent, OVERLAY, sampler], dataset, tmp_path / "two", processes=2, batch_size=2)
    assert two.returncode == 0, _output(two)
    weights = [
        torch.load(next((tmp_path / name / "runs").iterdir()) / "models" / "model_final.pt", weights_only=True)
        for name in ("one", "two")
    ]
    difference = max(float((weights[0][k] - weights[1][k]).abs().max()) for k in weights[0])
    print(f"2 processes x batch 2 vs 1 process x batch 4: max weight difference {difference:.3g}")
    # the gradients are the same sums taken in another order: float32 rounding only
    assert difference <= 1e-5, difference


def _infer(
    configs: list[Path], inputs: Path, checkpoint: Path, out: Path, processes: int
) -> subprocess.CompletedProcess:
    files = "[" + ",".join(f"'{c}'" for c in configs) + "]"
    launcher = [TORCHRUN, "--standalone", f"--nproc_per_node={processes}"] if processes > 1 else [sys.executable]
    command = [
        *launcher, "-m", "monai.bundle", "run", "inference", "--config_file", files, "--input", str(inputs),
        "--checkpoint", str(checkpoint), "--output_dir", str(out), "--device", "cpu",
    ]  # fmt: skip
    return _launch(command, out)


def test_sharded_inference_writes_every_input_once(dataset, tmp_path):
    trained = _train_here([REPO / "bundles" / "unet" / "train.json"], dataset, tmp_path / "train", batch_size=4)
    checkpoint = trained / "models" / "model.pt"
    assert checkpoint.is_file(), sorted(p.name for p in trained.rglob("*"))
    inputs = tmp_path / "inputs"
    shutil.copytree(dataset / "images", inputs / "images")
    for number in (1, 2):  # two studies of two series each: four series, and six images
        write_demo_study(inputs / f"study{number}", size=64, num_slices=3, seed=number)
    (inputs / "images" / "case_broken.png").write_bytes(b"not a png")  # fails, on whichever process has it

    inference = REPO / "bundles" / "unet" / "inference.json"
    one = _infer([inference], inputs, checkpoint, tmp_path / "one", processes=1)
    two = _infer([inference, INFERENCE_OVERLAY], inputs, checkpoint, tmp_path / "two", processes=2)
    for result in (one, two):
        assert result.returncode != 0 and "1 of " in result.stderr, _output(result)

    summaries = [json.loads((tmp_path / name / "summary.json").read_text()) for name in ("one", "two")]
    assert summaries[1]["processes"] == 2 and summaries[0]["processes"] == 1
    records = [[{k: r.get(k) for k in ("input", "kind", "status")} for r in s["inputs"]] for s in summaries]
    assert records[0] == records[1]  # every input once, in input order, merged from both processes
    kinds = [r["kind"] for r in records[1]]
    assert kinds.count("dicom series") == 4 and kinds.count("image") == 7
    assert summaries[1]["skipped_files"] == summaries[0]["skipped_files"]
    assert summaries[1]["not_selected"] == summaries[0]["not_selected"]  # reported once, not once per process

    written = [
        sorted(p.relative_to(tmp_path / n).as_posix() for p in (tmp_path / n).rglob("*.*")) for n in ("one", "two")
    ]
    assert written[0] == written[1]
    for name in written[1]:
        if name.endswith(("_mask.png", "labels.nii.gz")):
            assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name
    logged = two.stdout + two.stderr
    assert "process 0 of 2 (gloo)" in logged and "process 1 of 2 (gloo)" in logged


def test_resume_across_processes_continues_the_run(dataset, tmp_path):
    """2 processes killed after epoch 1 (its state saved, its summary still "running"), resumed by 2 processes with
    --resume true: the same run folder, and the weights of 2 processes that ran both epochs without a stop."""
    train = REPO / "bundles" / "unet" / "train.json"
    configs = [
        train,
        _write(tmp_path / "equivalent.json", EQUIVALENT),
        OVERLAY,
        _write(tmp_path / "ordered.json", {"train#sampler#shuffle": False}),
    ]
    straight = _train(configs, dataset, tmp_path / "straight", processes=2, batch_size=2)
    assert straight.returncode == 0, _output(straight)

    first = _train(configs, dataset, tmp_path / "resumed", processes=2, batch_size=2, epochs=1)
    assert first.returncode == 0, _output(first)
    (run,) = (tmp_path / "resumed" / "runs").iterdir()
    summary = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps({**summary, "status": "running"}))  # as a killed run leaves it
    resumed = _train(configs, dataset, tmp_path / "resumed", processes=2, batch_size=2, resume=True)
    assert resumed.returncode == 0, _output(resumed)

    assert [p.name for p in (tmp_path / "resumed" / "runs").iterdir()] == [run.name]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["epochs_run"] == 2
    weights = [
        torch.load(next((tmp_path / name / "runs").iterdir()) / "models" / "model_final.pt", weights_only=True)
        for name in ("straight", "resumed")
    ]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
