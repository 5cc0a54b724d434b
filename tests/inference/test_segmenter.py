"""``pipeline.Segmenter`` gives the inference command's masks and measurements, from Python, without writing files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline import Segmenter
from pipeline.demo import write_demo_dataset
from pipeline.demo.study import write_demo_study
from pipeline.io import LoadSlice
from pipeline.models.card import ModelCardError

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def run(tmp_path_factory, run_bundle) -> tuple[Path, Path, Path, Path]:
    """(run folder, images folder, study, inference output) of a 2-epoch unet run and its CLI inference."""
    root = tmp_path_factory.mktemp("segmenter")
    dataset = write_demo_dataset(root / "data", num_cases=4, size=64, val_fraction=0.5, seed=7)
    run_bundle("train", dataset_dir=str(dataset), output_dir=str(root / "out"), epochs=2)
    study = write_demo_study(root / "study", size=64, num_slices=4)
    for source in (dataset / "images", study):
        run_bundle(
            "inference",
            input=str(source),
            train_output_dir=str(root / "out"),
            output_dir=str(root / "inference" / source.name),
        )
    return root / "out" / "latest", dataset / "images", study, root / "inference"


def test_images_match_the_command(run):
    run_dir, images, _, inference = run
    model = Segmenter.from_run(run_dir, device="cpu")
    assert model.settings["spatial_size"] == [64, 64]  # from the model card
    for path in sorted(images.iterdir()):
        expected = np.asarray(Image.open(inference / "images" / "images" / f"{path.stem}_mask.png")) > 0
        from_file = model.predict(path)
        assert from_file.dtype == np.uint8 and from_file.shape == expected.shape
        assert np.array_equal(from_file > 0, expected), path.name
        hu = np.asarray(LoadSlice()(path))[0]
        assert np.array_equal(model.predict(hu), from_file)  # (H, W) in HU
        assert np.array_equal(model.predict(hu[None]), from_file)  # (1, H, W)
        assert np.array_equal(model.predict(hu[..., None]), from_file)  # (H, W, 1), channel last


def test_series_match_the_command(run):
    run_dir, _, study, inference = run
    model = Segmenter.from_run(run_dir, device="cpu")
    series_folders = sorted(p for p in study.rglob("*B?0f*") if p.is_dir())
    reports = {json.loads(p.read_text())["series_description"]: json.loads(p.read_text())
               for p in (inference / study.name).rglob("report.json")}  # fmt: skip
    assert len(series_folders) == 2 and len(reports) == 2
    for folder in series_folders:
        result = model.predict_series(folder)
        report = reports[result.volume.datasets[0].SeriesDescription]
        assert result.mask.shape == (4, 64, 64)
        for key in ("segmented_volume_ml", "volume_before_postprocessing_ml", "segmented_voxels", "per_slice"):
            assert result.report[key] == report[key], key
        assert int(result.mask.sum()) == report["segmented_voxels"]


def test_refusals_are_clear(run, tmp_path):
    run_dir, images, study, _ = run
    model = Segmenter.from_run(run_dir, device="cpu")
    with pytest.raises(ValueError, match="NaN or infinite"):
        model.predict(np.full((64, 64), np.nan, np.float32))
    with pytest.raises(ValueError, match=r"exactly one selected DICOM series.*found 2"):
        model.predict_series(study)
    with pytest.raises(ModelCardError, match="spatial_size: trained with"):
        Segmenter.from_run(run_dir, device="cpu", spatial_size=[96, 96])
    bare = tmp_path / "model.pt"
    bare.write_bytes((run_dir / "models" / "model.pt").read_bytes())
    with pytest.raises(ValueError, match=r"no model card.*pass bundle="):
        Segmenter(bare)
    with pytest.raises(ValueError, match=r"does not fit UNet.*without a model card.*--labels"):
        Segmenter(bare, bundle="unet", device="cpu", spatial_size=[64, 64])  # the defaults: the demo's 3 structures
    one = Segmenter(bare, bundle="unet", device="cpu", spatial_size=[64, 64], labels={"1": "lung"})
    assert one.predict(next(images.iterdir())).ndim == 2
