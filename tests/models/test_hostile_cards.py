"""A model folder is data: whatever its model card says, loading, exporting or packaging it never evaluates a config
the card points at, never turns a card field into a path outside the repository's bundles, and never writes a card
value into a config as code.

Each row is a card a sender could hand over with real weights (the trained fixture model). A hostile
``inference.json`` that would create a marker file waits wherever the card points; every loader must refuse the card
with a message that names it and the field, and the marker must never appear.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pipeline import Segmenter
from pipeline.models.card import ModelCard, ModelCardError
from pipeline.models.export import export_model
from pipeline.models.package import package_run

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "binary_model_964005e"


def _hostile_bundle(folder: Path, marker: Path) -> Path:
    """A bundle folder whose ``inference.json`` writes ``marker`` as soon as MONAI parses anything in it."""
    folder.mkdir(parents=True, exist_ok=True)
    code = f"$open({str(marker)!r}, 'w').write('evaluated')"
    config = {"imports": [code], "initialize": [code], "network_def": code, "spatial_size": code, "in_channels": code}
    for name in ("inference.json", "metadata.json"):
        (folder / name).write_text(json.dumps(config))
        (folder / "configs").mkdir(exist_ok=True)
        (folder / "configs" / name).write_text(json.dumps(config))
    return folder


def _traversal(tmp: Path, marker: Path) -> dict[str, Any]:
    _hostile_bundle(tmp / "elsewhere", marker)
    return {"model_name": "../../../../../../../../../../" + str(tmp / "elsewhere").lstrip("/")}


def _absolute(tmp: Path, marker: Path) -> dict[str, Any]:
    return {"model_name": str(_hostile_bundle(tmp / "absolute", marker))}


def _existing_folder(tmp: Path, marker: Path) -> dict[str, Any]:
    _hostile_bundle(tmp / "evil", marker)  # the working directory is ``tmp``: "evil" names an existing folder
    return {"model_name": "evil"}


def _shared_wiring(tmp: Path, marker: Path) -> dict[str, Any]:
    return {"model_name": "common"}  # bundles/common holds an inference.json, but it is the shared wiring


def _not_a_string(tmp: Path, marker: Path) -> dict[str, Any]:
    return {"model_name": ["unet"]}


def _expression_setting(tmp: Path, marker: Path) -> dict[str, Any]:
    card = json.loads((FIXTURE / "model.json").read_text())
    card["settings"]["threshold"] = f"$open({str(marker)!r}, 'w').write('evaluated') or 0.5"
    return {"settings": card["settings"]}


def _reference_setting(tmp: Path, marker: Path) -> dict[str, Any]:
    card = json.loads((FIXTURE / "model.json").read_text())
    card["settings"]["window"] = ["@imports", 400]
    return {"settings": card["settings"]}


def _component_in_data(tmp: Path, marker: Path) -> dict[str, Any]:
    return {"data": {"pairs": {"_target_": "builtins.open", "file": str(marker), "mode": "w"}}}


CARDS: list[tuple[str, Callable[[Path, Path], dict[str, Any]], str]] = [
    ("path traversal", _traversal, "field 'model_name' is '../../"),
    ("absolute path", _absolute, "field 'model_name' is '/"),
    ("an existing folder's name", _existing_folder, "field 'model_name' is 'evil', which is not one of"),
    ("not a name", _not_a_string, "field 'model_name' is ['unet']"),
    ("the shared wiring", _shared_wiring, "field 'model_name' is 'common', which is not one of"),
    ("expression in a setting", _expression_setting, "field 'settings#threshold' holds config syntax"),
    ("reference in a setting", _reference_setting, "field 'settings#window#0' holds config syntax"),
    ("component in the data", _component_in_data, "field 'data#pairs#_target_' is a config keyword"),
]

LOADERS: dict[str, Callable[[Path, Path], Any]] = {
    "Segmenter.from_run": lambda run, tmp: Segmenter.from_run(run, device="cpu"),
    "pipeline-export": lambda run, tmp: export_model(run / "models" / "model.pt", formats=("torchscript",)),
    "pipeline-package": lambda run, tmp: package_run(run, tmp / "packaged", torchscript=False),
}


@pytest.mark.parametrize("loader", sorted(LOADERS))
@pytest.mark.parametrize("what, make, message", CARDS, ids=[c[0] for c in CARDS])
def test_a_hostile_card_is_refused_and_runs_nothing(tmp_path, monkeypatch, loader, what, make, message):
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "marker"
    run = tmp_path / "run"
    (run / "models").mkdir(parents=True)
    shutil.copyfile(FIXTURE / "model.pt", run / "models" / "model.pt")
    card = {**json.loads((FIXTURE / "model.json").read_text()), **make(tmp_path, marker)}
    (run / "models" / "model.json").write_text(json.dumps(card))
    with pytest.raises(ModelCardError) as refused:
        LOADERS[loader](run, tmp_path)
    assert message in str(refused.value) and "model.json" in str(refused.value), str(refused.value)
    assert not marker.exists(), f"{what}: the card ran code through {loader}"
    assert not (tmp_path / "packaged").exists() and not list((run / "models").glob("model.ts"))


def test_the_fixture_card_itself_is_accepted(tmp_path):
    """The control row: the same loaders accept the honest card, so the refusals above are about the fields."""
    card = ModelCard.read(FIXTURE / "model.pt")
    assert card.bundle_dir().name == "unet"
    small_unet = {"network_def#channels": [4, 8, 16, 32, 64]}  # as it was trained (its README)
    assert Segmenter(FIXTURE / "model.pt", device="cpu", **small_unet).settings["spatial_size"] == [64, 64]


def test_an_explicit_bundle_folder_is_the_callers_choice(tmp_path):
    """A folder the caller passes is used (that is how a packaged bundle runs); a name that is neither a folder nor a
    repository bundle is refused by name."""
    with pytest.raises(FileNotFoundError, match="'nonexistent' is neither a folder nor one of this repository's"):
        Segmenter(FIXTURE / "model.pt", bundle="nonexistent", device="cpu")
