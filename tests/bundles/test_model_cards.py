"""A trained run's model card carries its settings to evaluation and inference, which refuse contradicting overrides."""

from __future__ import annotations

import json
from pathlib import Path

import pydicom
import pytest
from monai.bundle import ConfigWorkflow

from pipeline.demo import write_demo_dataset
from pipeline.demo.study import write_demo_study
from pipeline.models.card import ModelCardError, card_path
from pipeline.segments import SEGMENTS

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _repo_root(monkeypatch):
    monkeypatch.chdir(REPO)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, run_bundle) -> tuple[Path, Path]:
    """(dataset, output folder) of a 1-epoch unet run at 64 x 64 with a window and threshold of its own."""
    root = tmp_path_factory.mktemp("card")
    dataset = write_demo_dataset(root / "Doe^Jane", num_cases=4, size=96, val_fraction=0.5, seed=4)
    run_bundle("train", dataset_dir=str(dataset), output_dir=str(root / "out"), window=[-900, 300], threshold=0.4)
    return dataset, root / "out"


@pytest.fixture
def predict_workflow(bundle_workflow):
    """``predict_workflow(kind, trained, tmp_path, **override)``: evaluation or inference of the trained run."""

    def build(kind: str, trained: tuple[Path, Path], tmp_path: Path, **override) -> ConfigWorkflow:
        dataset, out = trained
        settings = {"train_output_dir": str(out), "output_dir": str(tmp_path / kind)}
        if kind == "inference":
            settings["input"] = str(next((dataset / "images").iterdir()))
        else:
            settings |= {"dataset_dir": str(dataset), "num_workers": 0}
        return bundle_workflow(kind, **settings | override)

    return build


def test_every_saved_model_has_a_card(trained):
    dataset, out = trained
    models = out / "latest" / "models"
    for weights in ("model.pt", "model_final.pt"):
        card = json.loads(card_path(models / weights).read_text())
        assert card["settings"]["spatial_size"] == [64, 64] and card["settings"]["window"] == [-900, 300]
        assert card["settings"]["threshold"] == 0.4 and card["settings"]["segment"]["label"] == "Lung"
        assert card["model_name"] == "unet" and card["epoch"] == 1 and "val_iou" in card["metrics"]
        assert card["data"]["pairs"] == 4 and card["data"]["splits"] == {"train": 2, "val": 2}
        text = card_path(models / weights).read_text()
        assert "Doe" not in text and str(dataset) not in text


@pytest.mark.parametrize("kind", ["inference", "evaluate"])
def test_trained_settings_apply_without_overrides(trained, tmp_path, kind, predict_workflow):
    workflow = predict_workflow(kind, trained, tmp_path)
    workflow.initialize()
    parsed = workflow.parser.get_parsed_content
    assert tuple(parsed("validate#resize").resizer.spatial_size) == (64, 64)
    assert tuple(parsed("validate#inferer").roi_size) == (64, 64)
    assert parsed("window") == [-900, 300] and parsed("threshold") == 0.4
    workflow.run()


@pytest.mark.parametrize("kind", ["inference", "evaluate"])
@pytest.mark.parametrize(
    "override, setting", [({"spatial_size": [96, 96]}, "spatial_size"), ({"window": [-1000, 400]}, "window")]
)
def test_contradicting_override_is_refused_unless_forced(trained, tmp_path, kind, override, setting, predict_workflow):
    workflow = predict_workflow(kind, trained, tmp_path, **override)
    with pytest.raises(RuntimeError) as raised:
        workflow.initialize()
    cause = raised.value
    while cause is not None and not isinstance(cause, ModelCardError):
        cause = cause.__cause__
    assert cause is not None and f"{setting}: trained with" in str(cause) and "--force_overrides" in str(cause)
    forced = predict_workflow(kind, trained, tmp_path / "forced", force_overrides=True, **override)
    forced.initialize()
    assert forced.parser.get_parsed_content(setting) == next(iter(override.values()))


def test_segment_travels_from_the_datalist_to_the_seg(tmp_path, run_bundle, predict_workflow):
    """A datalist's segment (here Kvasir's polyp) is recorded by training and written by inference into DICOM SEG."""
    dataset = write_demo_dataset(tmp_path / "data", num_cases=4, size=64, val_fraction=0.5, seed=5)
    items = [{"image": f"images/{p.name}", "label": f"masks/{p.name}"} for p in sorted((dataset / "images").iterdir())]
    (dataset / "datalist.json").write_text(json.dumps({"training": items, "segment": SEGMENTS["polyp"].to_config()}))
    run_bundle("train", dataset_dir=str(dataset), output_dir=str(tmp_path / "out"))
    card = json.loads((tmp_path / "out" / "latest" / "models" / "model.json").read_text())
    assert card["settings"]["segment"] == SEGMENTS["polyp"].to_config()

    study = write_demo_study(tmp_path / "study", size=64, num_slices=4)
    inference = predict_workflow("inference", (dataset, tmp_path / "out"), tmp_path, input=str(study))
    inference.initialize()
    inference.run()
    segs = sorted((tmp_path / "inference").rglob("seg.dcm"))
    assert len(segs) == 2  # the demo study's two series
    for seg_path in segs:
        segment = pydicom.dcmread(seg_path).SegmentSequence[0]
        assert segment.SegmentLabel == "Polyp"
        assert segment.SegmentedPropertyTypeCodeSequence[0].CodeValue == "68496003"
        assert len(segment.RecommendedDisplayCIELabValue) == 3
        assert json.loads((seg_path.parent / "report.json").read_text())["segment"] == "Polyp"
