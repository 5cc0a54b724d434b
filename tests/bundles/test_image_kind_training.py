"""Training on colour images without --modality or --in_channels: the data decides, and the model card records it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline import Segmenter
from pipeline.models.card import card_path
from pipeline.overrides import help_text

REPO = Path(__file__).resolve().parents[2]
SIZE = 80


def _polyp_frames(root: Path, count: int = 6, seed: int = 0) -> Path:
    """``images/*.jpg`` (reddish frames with a brighter, yellower disk) and ``masks/*.png`` (the disk, 0/255)."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rows, cols = np.mgrid[:SIZE, :SIZE]
    for k in range(count):
        centre, radius = rng.integers(20, SIZE - 20, 2), rng.integers(8, 16)
        disk = (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius**2
        frame = rng.normal((150, 60, 50), 12, (SIZE, SIZE, 3))
        frame[disk] += (60, 90, 20)
        Image.fromarray(np.clip(frame, 0, 255).astype(np.uint8)).save(root / "images" / f"frame{k}.jpg")
        Image.fromarray((disk * 255).astype(np.uint8)).save(root / "masks" / f"frame{k}.png")
    return root


@pytest.fixture(autouse=True)
def _repo_root(monkeypatch):
    monkeypatch.chdir(REPO)


def test_overrides_still_win(tmp_path, bundle_workflow):
    """MONAI replaces the object with the given value: the data is not even looked at (here its datalist is bad)."""
    data = _polyp_frames(tmp_path / "data", count=2)
    parsed = bundle_workflow("train", dataset_dir=str(data), output_dir=str(tmp_path / "out")).parser
    assert parsed.get_parsed_content("modality") == "OT" and parsed.get_parsed_content("in_channels") == 3
    training = [{"image": "images/frame0.jpg", "label": "masks/frame0.png"}]
    bad = {"modality": "XYZ", "bundle_overrides": {"in_channels": 2}, "training": training}
    (data / "dataset.json").write_text(json.dumps(bad))
    for key in ("modality", "in_channels"):
        workflow = bundle_workflow("train", dataset_dir=str(data), output_dir=str(tmp_path / "o"))
        with pytest.raises(RuntimeError, match=f"dataset_{key}") as raised:
            workflow.parser.get_parsed_content(key)
        assert "dataset.json: " in str(raised.value.__cause__)
    given = bundle_workflow(
        "train", dataset_dir=str(data), output_dir=str(tmp_path / "o"), modality="XR", in_channels=1
    )
    assert given.parser.get_parsed_content("modality") == "XR"
    assert given.parser.get_parsed_content("in_channels") == 1


@pytest.mark.parametrize(
    "kind, default",
    [("train", "made by dataset_modality"), ("inference", "the model card's, else made by dataset_modality")],
)
def test_help_says_where_the_default_comes_from(kind, default):
    config = json.loads((REPO / "bundles" / "unet" / f"{kind}.json").read_text())
    text = help_text(config, [f"{kind}.json"])
    assert f"--modality  (default: {default})" in text
    assert f"--in_channels  (default: {default.replace('modality', 'in_channels')})" in text
    assert (
        "--window  (default: " + ("[-1000, 400])" if kind == "train" else "the model card's, else [-1000, 400])")
        in text
    )


def test_colour_training_needs_no_overrides(tmp_path, run_bundle):
    data, out = _polyp_frames(tmp_path / "data"), tmp_path / "out"
    run_bundle("train", dataset_dir=str(data), output_dir=str(out))
    card = json.loads(card_path(out / "latest" / "models" / "model.pt").read_text())
    assert card["settings"]["in_channels"] == 3 and card["settings"]["modality"] == "OT"
    assert card["data"]["channels"] == [3]

    workflow = run_bundle(
        "inference",
        train_output_dir=str(out),
        input=str(data / "images" / "frame0.jpg"),
        output_dir=str(tmp_path / "i"),
    )
    assert workflow.parser.get_parsed_content("in_channels") == 3  # from the card, not the (absent) dataset
    assert workflow.parser.get_parsed_content("modality") == "OT"
    summary = json.loads((tmp_path / "i" / "summary.json").read_text())
    assert summary["num_failed"] == 0 and len(summary["inputs"]) == 1, summary
    # one epoch learns little: the result may be flagged as empty, never the input as the wrong kind of image
    assert not any("colour" in flag or "grey" in flag for flag in summary["inputs"][0].get("flags", [])), summary
    assert Image.open(tmp_path / "i" / summary["inputs"][0]["outputs"][0]).size == (SIZE, SIZE)

    # from Python: a frame as a file, as PIL's (H, W, 3) array and channel first, all the same mask
    model = Segmenter.from_run(out / "latest", device="cpu")
    frame = data / "images" / "frame0.jpg"
    rgb = np.asarray(Image.open(frame))
    expected = model.predict(frame)
    assert expected.shape == (SIZE, SIZE)
    assert np.array_equal(model.predict(rgb), expected)
    assert np.array_equal(model.predict(rgb.transpose(2, 0, 1)), expected)


def test_weights_with_a_card_never_read_the_data_for_their_settings(tmp_path, run_bundle, bundle_workflow):
    """Evaluation takes modality and channels from the card: a datalist that the data's own resolution refuses (an
    unknown modality code) is not read for them."""
    data, out = _polyp_frames(tmp_path / "data", count=4), tmp_path / "out"
    run_bundle("train", dataset_dir=str(data), output_dir=str(out))
    training = [{"image": f"images/frame{k}.jpg", "label": f"masks/frame{k}.png"} for k in range(4)]
    (data / "dataset.json").write_text(json.dumps({"modality": "XYZ", "training": training}))
    evaluation = bundle_workflow("evaluate", dataset_dir=str(data), train_output_dir=str(out))
    assert evaluation.parser.get_parsed_content("modality") == "OT"
    assert evaluation.parser.get_parsed_content("in_channels") == 3
