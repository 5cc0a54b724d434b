"""The bundle configs are generated from one set of sources: they must be current, and differ only in the model."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "bundles" / "generate.py"
BUNDLES = ["cenet", "aspp", "inception_unet", "unet"]
WORKFLOWS = ["train", "evaluate", "inference"]


def _check(bundles_dir: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, str(SCRIPT), "--check", "--bundles_dir", str(bundles_dir)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_generated_configs_are_current():
    """Fails when a source changed without ``python bundles/generate.py``, or a generated file was edited by hand."""
    result = _check(REPO / "bundles")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    "edit, stale",
    [
        (lambda b: (b / "unet" / "evaluate.json").write_text("{}\n"), ["unet/evaluate.json"]),
        (lambda b: _edit_json(b / "cenet" / "model.json", "network_def", {"_target_": "x"}), ["cenet/train.json"]),
        (lambda b: _edit_json(b / "common" / "train.json", "patience", 3), [f"{n}/train.json" for n in BUNDLES]),
        (lambda b: _edit_json(b / "common" / "predict.json", "flip_tta", True), ["aspp/inference.json"]),
    ],
)
def test_check_names_every_stale_file(edit, stale, tmp_path):
    bundles = tmp_path / "bundles"
    shutil.copytree(REPO / "bundles", bundles, symlinks=True)
    edit(bundles)
    result = _check(bundles)
    assert result.returncode == 1
    for name in stale:
        assert f"{bundles / name} differs from its sources" in result.stderr


def _edit_json(path: Path, key: str, value) -> None:
    config = json.loads(path.read_text())
    config[key] = value
    path.write_text(json.dumps(config))


@pytest.mark.parametrize(
    "file, key, value, message",
    [
        ("evaluate.json", "split", "@no_such_id", "evaluate refers to '@no_such_id', which no source defines"),
        # train_output_dir refers to @fold: evaluation would silently bind it to its own, different, fold
        ("evaluate.json", "fold", 3, "'train_output_dir' refers to ['fold'], which evaluate defines itself"),
        ("inference.json", "flip_tta", True, "common/inference.json defines 'flip_tta', which another file"),
    ],
)
def test_inconsistent_sources_are_refused(file, key, value, message, tmp_path):
    bundles = tmp_path / "bundles"
    shutil.copytree(REPO / "bundles", bundles, symlinks=True)
    _edit_json(bundles / "common" / file, key, value)
    result = _check(bundles)
    assert result.returncode == 2 and message in result.stderr, result.stderr


def _without_model(config: dict, model: dict) -> dict:
    return {k: v for k, v in config.items() if k not in {*model, "bundle_root", "_generated_"}}


@pytest.mark.parametrize("workflow", WORKFLOWS)
def test_bundles_differ_only_in_their_model(workflow):
    """Everything but the keys of a bundle's model.json (and where it lives) is the same in every bundle."""
    configs = {}
    for name in BUNDLES:
        model = json.loads((REPO / "bundles" / name / "model.json").read_text())
        config = json.loads((REPO / "bundles" / name / f"{workflow}.json").read_text())
        assert config["model_name"] == model["model_name"] == name
        assert config["network_def"] == model["network_def"]
        configs[name] = _without_model(config, model)
    for name in BUNDLES[1:]:
        assert configs[name] == configs[BUNDLES[0]], name


def test_a_model_default_replaces_the_common_value(tmp_path):
    """A bundle's own default (a key of model.json that the common files also set) takes that value's place."""
    bundles = tmp_path / "bundles"
    shutil.copytree(REPO / "bundles", bundles, symlinks=True)
    _edit_json(bundles / "unet" / "model.json", "learning_rate", 0.003)
    subprocess.run([sys.executable, str(SCRIPT), "--bundles_dir", str(bundles)], check=True, capture_output=True)
    train = json.loads((bundles / "unet" / "train.json").read_text())
    common = json.loads((bundles / "common" / "train.json").read_text())
    assert train["learning_rate"] == 0.003 and list(train).index("learning_rate") > list(train).index("imports")
    assert json.loads((bundles / "cenet" / "train.json").read_text())["learning_rate"] == common["learning_rate"]


_RECIPE_LOOKUP = re.compile(r"\$@recipes\[@chosen_recipe\]\['\w+'\]")


def _expressions(value) -> int:
    """How many ``$`` expressions a config value holds, not counting the recipe lookups
    (``"$@recipes[@chosen_recipe]['epochs']"``: one per recipe setting, a table rather than logic)."""
    if isinstance(value, str):
        return int(value.startswith("$") and not _RECIPE_LOOKUP.fullmatch(value))
    if isinstance(value, dict):
        return sum(_expressions(v) for v in value.values())
    if isinstance(value, list):
        return sum(_expressions(v) for v in value)
    return 0


def test_the_training_wiring_declares_and_code_computes():
    """``bundles/common/train.json`` keeps its logic in named Python components: at most 15 ``$`` expressions besides
    the recipe lookups (25 in all before the colour recipe, when the 10 lookups counted)."""
    common = json.loads((REPO / "bundles" / "common" / "train.json").read_text())
    assert _expressions(common) <= 15


@pytest.mark.parametrize("workflow", ["evaluate", "inference"])
def test_evaluation_and_inference_carry_no_training_recipe(workflow):
    """They take the trained settings from the model card and fall back to the default recipe's values, written in."""
    config = json.loads((REPO / "bundles" / "unet" / f"{workflow}.json").read_text())
    assert "recipes" not in config and "@recipes" not in json.dumps(config)
    assert config["spatial_size"] == "$@model_card.setting('spatial_size', [192, 192])"
    assert config["recipe"] is None  # kept so that --recipe warns instead of being ignored
