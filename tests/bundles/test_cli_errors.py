"""Failed bundle commands, through the real CLI: a short message with the reason, exit status 1, traceback in a log.

Each command is a process of its own, ``monai.bundle``'s ``__main__`` run as ``python -m monai.bundle`` runs it; all
but the first are forked from one process that has already imported MONAI (some 7 s per process otherwise), so that
the exit status, standard error and error log are still those of a command that ended on an uncaught error.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from monai.bundle import ConfigParser

from pipeline.demo import write_demo_dataset

REPO = Path(__file__).resolve().parents[2]
UNET = REPO / "bundles" / "unet"


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """Inputs for every failure: a good tiny dataset, broken copies of it, and weights of several kinds."""
    root = tmp_path_factory.mktemp("cli_errors")
    good = write_demo_dataset(root / "good", num_cases=4, size=64, val_fraction=0.5, seed=5)
    parser = ConfigParser()
    parser.read_config(str(UNET / "train.json"))
    torch.manual_seed(0)
    unet = parser.get_parsed_content("network_def").state_dict()
    torch.save(unet, root / "unet.pt")
    torch.save({k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in unet.items()},
               root / "nan.pt")  # fmt: skip
    aspp = ConfigParser()
    aspp.read_config(str(REPO / "bundles" / "aspp" / "train.json"))
    torch.save(aspp.get_parsed_content("network_def").state_dict(), root / "aspp.pt")

    missing_mask = write_demo_dataset(root / "missing_mask", num_cases=4, size=64, seed=5)
    sorted((missing_mask / "masks").iterdir())[0].unlink()
    bad_csv = write_demo_dataset(root / "bad_csv", num_cases=4, size=64, seed=5)
    (bad_csv / "pairs.csv").write_text("filename,split\ncase_0000.tif,train\n,val\n")
    (root / "datalist.json").write_text(json.dumps({"training": [{"image": 123, "label": "m.png"}]}))
    nan_val = write_demo_dataset(root / "nan_val", num_cases=4, size=64, val_fraction=0.5, seed=5)
    for name in [line.split(",")[0] for line in (nan_val / "pairs.csv").read_text().splitlines() if ",val" in line]:
        image = tifffile.imread(nan_val / "images" / name).astype(np.float32)
        image[:4] = np.nan
        tifffile.imwrite(nan_val / "images" / name, image)
    (root / "a_file").write_text("not a folder")
    return {"root": root, "good": good, "missing_mask": missing_mask, "bad_csv": bad_csv, "nan_val": nan_val}


def _train(f: dict[str, Path], *args: str) -> list[str]:
    common = ["--epochs", "1", "--spatial_size", "[64,64]", "--device", "cpu", "--num_workers", "0"]
    return ["training", "--config_file", str(UNET / "train.json"), *common, *args]


def _infer(f: dict[str, Path], *args: str) -> list[str]:
    return ["inference", "--config_file", str(UNET / "inference.json"), "--spatial_size", "[64,64]", "--device", "cpu",
            *args]  # fmt: skip


def _evaluate(f: dict[str, Path], *args: str) -> list[str]:
    return ["evaluating", "--config_file", str(UNET / "evaluate.json"), "--spatial_size", "[64,64]", "--device", "cpu",
            "--num_workers", "0", *args]  # fmt: skip


CASES: list[tuple[str, Callable[[dict[str, Path]], list[str]], str]] = [
    ("dataset missing", lambda f: _train(f, "--dataset_dir", str(f["root"] / "nowhere")), "does not exist"),
    ("mask missing", lambda f: _train(f, "--dataset_dir", str(f["missing_mask"])), "case_0000.tif"),
    ("pairs.csv row", lambda f: _train(f, "--dataset_dir", str(f["bad_csv"])), "pairs.csv line 3: no image file"),
    ("datalist entry", lambda f: _train(f, "--dataset_dir", str(f["root"] / "datalist.json")), "got 123"),
    (
        "nothing to resume",
        lambda f: _train(f, "--dataset_dir", str(f["good"]), "--resume", "true"),
        "no unfinished run",
    ),
    ("bad schedule", lambda f: _train(f, "--dataset_dir", str(f["good"]), "--lr_schedule", "fast"), "fast"),
    ("bad flag", lambda f: _train(f, "--dataset_dir", str(f["good"]), "--output_bias", "maybe"), "output_bias"),
    ("no input", lambda f: _infer(f, "--checkpoint", str(f["root"] / "unet.pt")), "no inference input given"),
    ("no weights", lambda f: _infer(f, "--input", str(f["good"] / "images")), "Train the model first"),
    (
        "other network",
        lambda f: _infer(f, "--input", str(f["good"] / "images"), "--checkpoint", str(f["root"] / "aspp.pt")),
        "aspp.pt does not fit UNet",
    ),
    (
        "NaN weights",
        lambda f: _infer(f, "--input", str(f["good"] / "images"), "--checkpoint", str(f["root"] / "nan.pt")),
        "nan.pt holds non-finite weights",
    ),
    (
        "NaN image",
        lambda f: _evaluate(f, "--dataset_dir", str(f["nan_val"]), "--checkpoint", str(f["root"] / "unet.pt")),
        "NaN",
    ),
]


# A process that imports what every ``python -m monai.bundle`` imports, then forks one child per command line read
# from standard input. The child takes the command's working directory, environment, arguments and output files and
# runs monai.bundle's __main__ as ``python -m`` does; an error it raises is uncaught, so Python calls sys.excepthook
# and exits with status 1, as the command does. The parent answers each line with the child's exit status.
_FORKING_CLI = textwrap.dedent(
    """
    import json, os, runpy, sys
    import monai.bundle.scripts
    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        child = os.fork()
        if child == 0:
            os.chdir(request["cwd"])
            os.environ.clear()
            os.environ.update(request["env"])
            for fd, name in ((1, "stdout"), (2, "stderr")):
                file = os.open(request[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                os.dup2(file, fd)
                os.close(file)
            sys.argv = ["-m", *request["args"]]  # runpy sets argv[0] to the module's file, as python -m does
            runpy.run_module("monai.bundle", run_name="__main__", alter_sys=True)
            sys.exit(0)
        _, status = os.waitpid(child, 0)
        print(os.waitstatus_to_exitcode(status), flush=True)
    """
)


@pytest.fixture(scope="module")
def forked_cli() -> Iterator[Callable[..., subprocess.CompletedProcess]]:
    """``forked_cli(args, cwd, env, timeout)``: ``python -m monai.bundle *args``, forked from a process that has
    imported MONAI already; the result as ``subprocess.run`` gives it (exit status and standard error)."""
    parent = subprocess.Popen([sys.executable, "-c", _FORKING_CLI], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)  # fmt: skip
    answers = selectors.DefaultSelector()
    answers.register(parent.stdout, selectors.EVENT_READ)

    def run(args: list[str], cwd: Path, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
        out, err = cwd / "command.stdout", cwd / "command.stderr"
        request = {"args": args, "cwd": str(cwd), "env": env, "stdout": str(out), "stderr": str(err)}
        parent.stdin.write(json.dumps(request) + "\n")
        parent.stdin.flush()
        if not answers.select(timeout):
            raise subprocess.TimeoutExpired(args, timeout)
        returncode = int(parent.stdout.readline())
        return subprocess.CompletedProcess(args, returncode, out.read_text(), err.read_text())

    yield run
    parent.stdin.close()
    parent.wait(timeout=60)


@pytest.mark.slow
@pytest.mark.parametrize("build, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_failed_command_ends_with_its_reason(files, forked_cli, tmp_path, build, expected):
    out = tmp_path / "out"
    command = [sys.executable, "-m", "monai.bundle", "run", *build(files), "--output_dir", str(out)]
    env = {k: v for k, v in os.environ.items() if k != "PIPELINE_TRACEBACK"}
    if build is CASES[0][1]:  # the first case in a fresh process, exactly as a person types it
        result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
    else:
        result = forked_cli(command[3:], cwd=tmp_path, env=env, timeout=600)
    assert result.returncode == 1, result.stderr[-2000:]
    tail = result.stderr.strip().splitlines()
    error = next(i for i, line in enumerate(tail) if line.startswith("error: "))
    assert expected in "\n".join(tail[error:-1]), result.stderr[-2000:]
    assert tail[-1].startswith("(traceback in ") and "Traceback" not in result.stderr
    log = (out / "error.log").read_text()
    assert "Traceback (most recent call last)" in log and expected.split()[0] in log


def test_traceback_on_request(files, tmp_path):
    """PIPELINE_TRACEBACK=1 prints the traceback too, for debugging."""
    out = tmp_path / "out"
    command = [sys.executable, "-m", "monai.bundle", "run", *_infer(files), "--output_dir", str(out)]
    env = {**os.environ, "PIPELINE_TRACEBACK": "1"}
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
    assert result.returncode == 1 and "Traceback (most recent call last)" in result.stderr
    assert "error: " in result.stderr


def test_installing_twice_replaces_the_hook(tmp_path):
    from pipeline.errors import readable_errors

    before = sys.excepthook
    try:
        readable_errors(tmp_path / "a")
        first = sys.excepthook
        readable_errors(tmp_path / "b")
        original = getattr(before, "replaced", before)  # earlier tests in this process may have installed it
        assert sys.excepthook is not first and sys.excepthook.replaced is original  # not nested in the first one
    finally:
        sys.excepthook = before
