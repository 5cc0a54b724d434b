"""The installed commands ([project.scripts]) run, and the scripts in datasets/ are the same commands."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# the names in pyproject.toml's [project.scripts] table (tomllib is not in Python 3.10)
_TABLE = (REPO / "pyproject.toml").read_text().split("[project.scripts]")[1].split("\n[")[0]
SCRIPTS = re.findall(r"^([\w-]+)\s*=", _TABLE, flags=re.MULTILINE)


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_command_is_installed_and_answers_help(name, tmp_path):
    path = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    assert path is not None, f"{name} is not installed: pip install -e ."
    result = _run([path, "--help"], tmp_path)
    assert result.returncode == 0 and "usage:" in result.stdout, result.stderr


def test_demo_command_and_script_write_the_same_files(tmp_path):
    demo = shutil.which("pipeline-demo", path=str(Path(sys.executable).parent)) or "pipeline-demo"
    args = ["--num_cases", "3", "--size", "64", "--seed", "4"]
    assert _run([demo, "--out", str(tmp_path / "a"), *args], tmp_path).returncode == 0
    script = _run(
        [sys.executable, str(REPO / "datasets" / "make_demo.py"), "--out", str(tmp_path / "b"), *args], tmp_path
    )
    assert script.returncode == 0, script.stderr
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert files and files == sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    for name in files:
        if name.suffix != ".json":  # the manifest records its own folder
            assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


@pytest.mark.parametrize(
    "name, args, message",
    [
        (
            "pipeline-prepare",
            ["kvasir", "--source", "nowhere", "--out", "out"],
            "error: source nowhere is not a folder",
        ),
        ("pipeline-export", ["nowhere"], "error: No weights file at nowhere"),
    ],
)
def test_failing_command_says_why(name, args, message, tmp_path):
    path = shutil.which(name, path=str(Path(sys.executable).parent)) or name
    result = _run([path, *args], tmp_path)
    assert result.returncode != 0 and message in result.stderr, result.stderr


def test_bundles_command_names_the_bundle_folders(tmp_path):
    from pipeline.bundle import BUNDLES_DIR, repository_bundles

    path = shutil.which("pipeline-bundles", path=str(Path(sys.executable).parent)) or "pipeline-bundles"
    listed = [line.split() for line in _run([path], tmp_path).stdout.splitlines()]
    assert listed == [[name, str(BUNDLES_DIR / name)] for name in repository_bundles()] and len(listed) == 4
    assert _run([path, "cenet"], tmp_path).stdout.strip() == str(BUNDLES_DIR / "cenet")
    unknown = _run([path, "cenett"], tmp_path)
    assert unknown.returncode == 1 and "no bundle 'cenett': the installed bundles are aspp, cenet," in unknown.stderr
