"""Model cards: written beside the weights, read back, and checked against a run's settings."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.networks.nets import UNet

from bundles.generate import _from_card
from pipeline.demo import write_demo_dataset
from pipeline.intake import check_dataset, load_datalist
from pipeline.io import LoadSlice
from pipeline.models.card import FORMAT, ModelCard, ModelCardError, card_path, check_card, network_name, read_model_card

SETTINGS = {
    "spatial_size": [256, 256],
    "modality": "CT",
    "window": [-1000, 400],
    "in_channels": 1,
    "threshold": 0.5,
    "segment": {"label": "Lung", "category": ["91723000", "Anatomical Structure"]},
}


def _net() -> UNet:
    return UNet(spatial_dims=2, in_channels=1, out_channels=1, channels=(4, 8), strides=(2,))


def _weights(folder: Path, name: str = "model.pt", settings: dict | None = None, network=None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    torch.save(_net().state_dict(), path)
    if settings is not None:
        card = ModelCard(model_name="unet", network=network or _net(), settings=settings, data={"pairs": 3})
        card.write(path, epoch=4, metrics={"val_iou": 0.9, "note": "not a number"}, best_metric=0.91)
    return path


def test_card_is_written_beside_the_weights_and_reads_back(tmp_path):
    weights = _weights(tmp_path / "models", settings={**SETTINGS, "window": (-1000, 400)})
    path = card_path(weights)
    assert path == tmp_path / "models" / "model.json"
    raw = json.loads(path.read_text())
    assert raw["format"] == FORMAT and raw["weights"] == "model.pt" and raw["epoch"] == 4
    assert raw["metrics"] == {"val_iou": 0.9} and raw["best_metric"] == 0.91
    assert raw["network"] == "monai.networks.nets.unet.UNet" and len(raw["sha256"]) == 64
    assert str(tmp_path) not in path.read_text()  # the name of the weights, never their folder
    card = ModelCard.read(weights)
    assert card.found and card.settings == SETTINGS  # tuples come back as the JSON lists they are stored as
    assert card.setting("spatial_size", [192, 192]) == [256, 256]
    assert card.setting("segment#label", "Liver") == "Lung"
    assert card.setting("segment::label", "Liver") == "Lung"  # how MONAI passes '#' inside an expression
    assert card.setting("segment#property_type", ["x", "y"]) == ["x", "y"]  # not recorded: the bundle's default
    assert card.setting("out_channels", 1) == 1


@pytest.mark.parametrize(
    "override, message",
    [
        ({"spatial_size": [192, 192]}, "spatial_size: trained with [256, 256], this run has [192, 192]"),
        ({"modality": "MR"}, 'modality: trained with "CT", this run has "MR"'),
        ({"window": [-500, 500]}, "window: trained with [-1000, 400], this run has [-500, 500]"),
        ({"in_channels": 3}, "in_channels: trained with 1, this run has 3"),
        ({"threshold": 0.3}, "threshold: trained with 0.5, this run has 0.3"),
        ({"segment": {**SETTINGS["segment"], "label": "Liver"}}, '"label": "Liver"'),
    ],
)
def test_an_override_that_contradicts_the_card_is_refused(tmp_path, override, message, caplog):
    card = ModelCard.read(_weights(tmp_path, settings=SETTINGS))
    card.check(SETTINGS, network=_net(), model_name="unet")  # the trained settings pass
    with pytest.raises(ModelCardError) as raised:
        card.check({**SETTINGS, **override}, network=_net(), model_name="unet")
    assert message in str(raised.value) and "--force_overrides true" in str(raised.value)
    assert "model.pt" in str(raised.value)
    with caplog.at_level(logging.WARNING, logger="pipeline.models.card"):
        card.check({**SETTINGS, **override}, network=_net(), model_name="unet", force=True)
    assert message in caplog.text


def test_weights_of_another_network_name_the_bundle_to_use(tmp_path):
    card = ModelCard.read(_weights(tmp_path, settings=SETTINGS, network="pipeline.networks.nets.cenet.CENet"))
    card.model_name = "cenet"
    with pytest.raises(ModelCardError, match=r"holds a CENet trained by bundle cenet.*run bundles/cenet"):
        card.check(SETTINGS, network=_net(), model_name="unet", force=True)  # not forceable: it cannot load


def test_weights_without_a_card_use_the_bundle_settings_with_a_warning(tmp_path, caplog):
    weights = _weights(tmp_path)
    with caplog.at_level(logging.WARNING, logger="pipeline.models.card"):
        card = read_model_card([weights])
    assert not card.found and "no model card beside model.pt" in caplog.text
    assert card.setting("spatial_size", [192, 192]) == [192, 192]
    card.check({"spatial_size": [64, 64]}, network=_net())  # nothing to contradict


@pytest.mark.parametrize(
    "text, problem",
    [("{not json", "is unreadable"), ('{"format": "other/2"}', "not a model card of format"), ("[1]", "list")],
)
def test_a_broken_card_is_named(tmp_path, text, problem):
    weights = _weights(tmp_path)
    card_path(weights).write_text(text)
    with pytest.raises(ModelCardError, match=problem) as raised:
        read_model_card(weights)
    assert "model.json" in str(raised.value)


def test_ensemble_members_must_agree(tmp_path, caplog):
    a = _weights(tmp_path / "fold0", settings=SETTINGS)
    b = _weights(tmp_path / "fold1", settings=SETTINGS)
    assert read_model_card([a, b]).settings == SETTINGS
    assert read_model_card([str(tmp_path / "fold*" / "model.pt")]).found  # patterns as in --checkpoints
    c = _weights(tmp_path / "fold2", settings={**SETTINGS, "spatial_size": [128, 128]})
    with pytest.raises(ModelCardError, match=r"fold0/model\.pt and fold2/model\.pt differ in spatial_size"):
        read_model_card([a, c])


def test_replaced_weights_are_noticed(tmp_path, caplog):
    weights = _weights(tmp_path, settings=SETTINGS)
    torch.save(_net().state_dict(), weights)  # new random weights, card left from the old ones
    with caplog.at_level(logging.WARNING, logger="pipeline.models.card"):
        ModelCard.read(weights)
    assert "describes another version of model.pt" in caplog.text


def test_network_name():
    assert network_name(_net()) == network_name(UNet) == "monai.networks.nets.unet.UNet"


def test_fingerprint_pools_the_images_and_holds_no_path(tmp_path):
    dataset = write_demo_dataset(tmp_path / "Doe^Jane", num_cases=4, size=64, val_fraction=0.5, seed=3)
    items = load_datalist(dataset)
    report = check_dataset(items, num_workers=1)
    fingerprint = report.fingerprint({"train": items[:3], "val": items[3:]})
    images = [np.asarray(LoadSlice()(item["image"]), dtype=np.float64) for item in items]
    pixels = np.concatenate([i.ravel() for i in images])
    assert fingerprint["pairs"] == 4 and fingerprint["splits"] == {"train": 3, "val": 1}
    assert fingerprint["height"] == {"min": 64, "median": 64.0, "max": 64} and fingerprint["channels"] == [1]
    assert fingerprint["intensity"]["mean"] == pytest.approx(pixels.mean())
    assert fingerprint["intensity"]["std"] == pytest.approx(pixels.std())
    assert fingerprint["intensity"]["min"] == pixels.min() and fingerprint["intensity"]["max"] == pixels.max()
    assert 0 < fingerprint["foreground_fraction"] < 1
    assert "Doe" not in json.dumps(fingerprint) and "case" not in json.dumps(fingerprint)


@pytest.mark.parametrize(
    "name, default, expected",
    [
        ("modality", "CT", "$@model_card.setting('modality', 'CT')"),
        ("window", [-1000, 400], "$@model_card.setting('window', [-1000, 400])"),
        ("size", "$@recipes[@recipe]['size']", "$@model_card.setting('size', (@recipes[@recipe]['size']))"),
        ("size", "@other", "$@model_card.setting('size', @other)"),
        ("flag", None, "$@model_card.setting('flag', None)"),
        ("segment", {"label": "Lung"}, {"label": "$@model_card.setting('segment#label', 'Lung')"}),
    ],
)
def test_generated_settings_read_the_card_first(name, default, expected):
    assert _from_card(name, default) == expected


def test_check_card_reads_force_overrides_as_typed(tmp_path, caplog):
    card = ModelCard.read(_weights(tmp_path, settings=SETTINGS))
    changed = {**SETTINGS, "threshold": 0.3}
    with pytest.raises(ModelCardError):
        check_card(card, changed, network=_net(), model_name="unet", force="false")
    with caplog.at_level(logging.WARNING, logger="pipeline.models.card"):
        check_card(card, changed, network=_net(), model_name="unet", force="true")
    assert "threshold: trained with 0.5" in caplog.text
