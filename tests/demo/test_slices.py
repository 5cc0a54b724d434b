"""The synthetic chest-CT demo data: slice content, label maps, files, determinism, atomic writes and reuse."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image
from scipy import ndimage

from pipeline.demo import slices as demo
from pipeline.demo.phantom import HEART, LEFT_LUNG, RIGHT_LUNG
from pipeline.demo.slices import (
    DATALIST_NAME,
    MARKER_NAME,
    ensure_demo_dataset,
    is_complete_demo_dataset,
    synthesize_ct_slice,
    write_demo_dataset,
)
from pipeline.intake import dataset_structures, load_datalist, split_datalist
from pipeline.io import LoadSlice

REPO = Path(__file__).resolve().parents[2]
SMALL = {"num_cases": 4, "size": 64}


def _slices(n: int, size: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    return [synthesize_ct_slice(np.random.default_rng([seed, i]), size) for i in range(n)]


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _mtimes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in sorted(root.rglob("*"))}


def _splits(root: Path) -> list[dict[str, str]]:
    with open(root / "pairs.csv", newline="") as f:
        return list(csv.DictReader(f))


class _Boom(RuntimeError):
    pass


def _failing_synthesizer(monkeypatch: pytest.MonkeyPatch, fail_at: int = 0) -> None:
    """Make slice ``fail_at`` (0-based) of the next generation raise :class:`_Boom`."""
    calls = {"n": 0}
    real = demo.synthesize_ct_slice

    def synthesize(rng: np.random.Generator, size: int = 256, label_maps: bool = False) -> tuple[np.ndarray, ...]:
        calls["n"] += 1
        if calls["n"] > fail_at:
            raise _Boom("interrupted")
        return real(rng, size, label_maps)

    monkeypatch.setattr(demo, "synthesize_ct_slice", synthesize)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_demo_dataset(tmp_path_factory.mktemp("demo") / "ct", num_cases=6, size=96, val_fraction=0.34, seed=1)


@pytest.fixture(scope="module")
def structures_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The README's kind of demo data: label maps of three structures, the same cases as ``dataset``."""
    root = tmp_path_factory.mktemp("demo") / "ct"
    return write_demo_dataset(root, num_cases=6, size=96, val_fraction=0.34, seed=1, label_maps=True)


@pytest.mark.parametrize("size", [64, 96])
def test_slice_shapes_dtypes_and_ranges(size):
    for image, mask in _slices(3, size):
        assert image.shape == mask.shape == (size, size)
        assert image.dtype == np.int16 and mask.dtype == np.uint8
        assert set(np.unique(mask).tolist()) == {0, 1}
        assert 0.02 < mask.mean() < 0.5
        assert image.min() >= -3024 and image.max() <= 3071
        assert image[0, 0] < -700 and image[-1, -1] < -700  # air or padding outside the body
        assert image.max() > 200  # bone


def test_size_too_small():
    with pytest.raises(ValueError, match="at least 64"):
        synthesize_ct_slice(np.random.default_rng(0), 32)


def test_two_lungs_most_of_the_time():
    counts = [ndimage.label(mask)[1] for _, mask in _slices(12, 64, seed=3)]
    assert sum(n == 2 for n in counts) >= 9, counts


def test_mask_matches_the_dark_lung_fields():
    for image, mask in _slices(6, 96, seed=4):
        lung = mask.astype(bool)
        core = ndimage.binary_erosion(lung, iterations=2)
        ring = ndimage.binary_dilation(lung, iterations=4) & ~ndimage.binary_dilation(lung, iterations=1)
        assert -900 < np.median(image[core]) < -600  # aerated lung, about -850 before the scanner gain
        assert np.median(image[ring]) > np.median(image[core]) + 500  # chest wall and mediastinum around it
        body = ndimage.binary_fill_holes(image > -400)
        soft = body & ~ndimage.binary_dilation(lung, iterations=3) & (image > -400)
        assert -80 < np.median(image[soft]) < 100  # unmasked soft tissue (about 40) and fat (about -100)
        dark = ndimage.binary_opening(body & (image < -500))  # dark fields inside the body, noise removed
        assert (dark & lung).sum() > 0.9 * dark.sum()  # the mask holds nearly all of them (airways aside)
        # Few bright pixels in the mask: vessels (at least one pixel wide, so more of them at small sizes), edges.
        assert (lung & (image < -400)).sum() > 0.65 * lung.sum()


def test_label_maps_hold_the_lungs_and_the_heart():
    """The same image with either kind of mask; the label map splits the binary lungs into sides and adds the heart."""
    for i in range(6):
        image, lungs = synthesize_ct_slice(np.random.default_rng([5, i]), 96)
        same, labels = synthesize_ct_slice(np.random.default_rng([5, i]), 96, label_maps=True)
        assert np.array_equal(image, same) and labels.dtype == np.uint8 and labels.shape == (96, 96)
        assert set(np.unique(labels).tolist()) <= {0, RIGHT_LUNG, LEFT_LUNG, HEART}
        np.testing.assert_array_equal(np.isin(labels, (RIGHT_LUNG, LEFT_LUNG)), lungs.astype(bool))
        rows, cols = np.nonzero(np.isin(labels, (RIGHT_LUNG, LEFT_LUNG)))
        if cols.size:  # the patient's right lung on the image's left
            right, left = (cols[labels[rows, cols] == value] for value in (RIGHT_LUNG, LEFT_LUNG))
            assert right.size == 0 or left.size == 0 or right.mean() < left.mean()


def test_slice_determinism():
    (a_img, a_mask), (b_img, b_mask) = (synthesize_ct_slice(np.random.default_rng(7), 64) for _ in range(2))
    assert np.array_equal(a_img, b_img) and np.array_equal(a_mask, b_mask)
    c_img, _ = synthesize_ct_slice(np.random.default_rng(8), 64)
    assert not np.array_equal(a_img, c_img)


def test_dataset_layout_and_dtypes(dataset):
    names = [row["filename"] for row in _splits(dataset)]
    assert names == [f"case_{i:04d}.tif" for i in range(6)]
    assert sorted(p.name for p in (dataset / "images").iterdir()) == names
    assert sorted(p.name for p in (dataset / "masks").iterdir()) == names
    image = tifffile.imread(dataset / "images" / names[0])
    assert image.shape == (96, 96) and image.dtype == np.int16
    with Image.open(dataset / "masks" / names[0]) as mask_file:
        assert mask_file.info.get("compression") == "tiff_lzw"
        mask = np.asarray(mask_file)
    assert mask.dtype == np.uint8 and set(np.unique(mask).tolist()) == {0, 1}
    marker = json.loads((dataset / MARKER_NAME).read_text())
    assert marker["num_cases"] == 6 and marker["size"] == 96 and marker["seed"] == 1
    assert is_complete_demo_dataset(dataset, num_cases=6, size=96, val_fraction=0.34, seed=1)


def test_files_load_with_load_slice(dataset):
    name = "case_0002.tif"
    image = LoadSlice()(dataset / "images" / name)
    label = LoadSlice()(dataset / "masks" / name)
    assert tuple(image.shape) == tuple(label.shape) == (1, 96, 96)
    assert image.dtype == label.dtype == torch.float32
    np.testing.assert_array_equal(image[0].numpy(), tifffile.imread(dataset / "images" / name))
    assert set(torch.unique(label).tolist()) == {0.0, 1.0}
    assert image[label > 0].median() < -500 < image[label == 0].max()


def test_label_map_dataset_layout(structures_dataset, dataset):
    root = structures_dataset
    datalist = json.loads((root / DATALIST_NAME).read_text())
    assert datalist["labels"] == {"0": "background", "1": "right lung", "2": "left lung", "3": "heart"}
    entries = datalist["training"] + datalist["validation"]
    assert sorted(e["image"] for e in entries) == [f"images/case_{i:04d}.tif" for i in range(6)]
    assert all(e["label"] == e["image"].replace("images/", "labels/").replace(".tif", ".png") for e in entries)
    val = [row["filename"] for row in _splits(dataset) if row["split"] == "val"]
    assert [Path(e["image"]).name for e in datalist["validation"]] == val  # the binary dataset's split
    assert not (root / "masks").exists() and not (root / "pairs.csv").exists()
    values = set()
    for entry in entries:
        assert (root / entry["image"]).read_bytes() == (dataset / entry["image"]).read_bytes()  # the same images
        with Image.open(root / entry["label"]) as label_file:
            assert label_file.format == "PNG" and label_file.mode == "L"
            labels = np.asarray(label_file)
        assert labels.dtype == np.uint8 and labels.shape == (96, 96)
        values |= set(np.unique(labels).tolist())
    assert values == {0, RIGHT_LUNG, LEFT_LUNG, HEART}
    marker = json.loads((root / MARKER_NAME).read_text())
    assert marker["label_maps"] is True
    assert is_complete_demo_dataset(root, num_cases=6, size=96, val_fraction=0.34, seed=1, label_maps=True)
    assert not is_complete_demo_dataset(root, label_maps=False)


def test_label_map_dataset_reads_as_three_structures(structures_dataset):
    """What training sees: the datalist's structures, its fixed split, and label maps that load as values 0 to 3."""
    assert [s["label"] for s in dataset_structures(structures_dataset)] == ["Right lung", "Left lung", "Heart"]
    items = load_datalist(structures_dataset)
    splits = split_datalist(items)
    assert len(splits["train"]) == 4 and len(splits["val"]) == 2
    label = LoadSlice()(items[0]["label"])
    assert tuple(label.shape) == (1, 96, 96) and set(torch.unique(label).tolist()) <= {0.0, 1.0, 2.0, 3.0}


def test_label_map_dataset_determinism(tmp_path):
    first = _files(write_demo_dataset(tmp_path / "a", **SMALL, seed=5, label_maps=True))
    assert first == _files(write_demo_dataset(tmp_path / "b", **SMALL, seed=5, label_maps=True))  # byte-identical
    other = _files(write_demo_dataset(tmp_path / "c", **SMALL, seed=6, label_maps=True))
    assert all(first[f"labels/case_{i:04d}.png"] != other[f"labels/case_{i:04d}.png"] for i in range(4))


def test_incomplete_label_map_dataset(tmp_path):
    root = write_demo_dataset(tmp_path / "ct", **SMALL, label_maps=True)
    assert is_complete_demo_dataset(root, **SMALL)
    (root / "labels" / "case_0002.png").unlink()
    assert not is_complete_demo_dataset(root, **SMALL)
    (root / DATALIST_NAME).write_text("{not json")
    assert not is_complete_demo_dataset(root, **SMALL)


@pytest.mark.parametrize(
    "num_cases, val_fraction, n_val", [(5, 0.2, 1), (6, 0.34, 2), (4, 0.0, 0), (4, 0.5, 2), (1, 0.2, 0)]
)
def test_split_counts(tmp_path, num_cases, val_fraction, n_val):
    root = write_demo_dataset(tmp_path / "ct", num_cases=num_cases, size=64, val_fraction=val_fraction)
    splits = [row["split"] for row in _splits(root)]
    assert len(splits) == num_cases
    assert splits.count("val") == n_val and splits.count("train") == num_cases - n_val


@pytest.mark.parametrize(
    "kwargs, match",
    [({"num_cases": 0}, "num_cases"), ({"size": 32}, "size"), ({"val_fraction": 1.0}, "val_fraction")],
)
def test_invalid_parameters(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        write_demo_dataset(tmp_path / "ct", **{**SMALL, **kwargs})
    assert list(tmp_path.iterdir()) == []


def test_dataset_determinism(tmp_path):
    first = _files(write_demo_dataset(tmp_path / "a", **SMALL, seed=5))
    assert first == _files(write_demo_dataset(tmp_path / "b", **SMALL, seed=5))  # byte-identical
    other = _files(write_demo_dataset(tmp_path / "c", **SMALL, seed=6))
    assert all(first[f"images/case_{i:04d}.tif"] != other[f"images/case_{i:04d}.tif"] for i in range(4))
    fewer = _files(write_demo_dataset(tmp_path / "d", num_cases=2, size=64, seed=5))
    assert fewer["images/case_0001.tif"] == first["images/case_0001.tif"]  # case i does not depend on num_cases


def test_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    _failing_synthesizer(monkeypatch, fail_at=2)
    with pytest.raises(_Boom):
        write_demo_dataset(tmp_path / "ct", **SMALL)
    assert list(tmp_path.iterdir()) == []  # neither the target nor a temporary folder


def test_interrupted_rewrite_keeps_the_previous_dataset(tmp_path, monkeypatch):
    root = write_demo_dataset(tmp_path / "ct", **SMALL, seed=0)
    before = _files(root)
    _failing_synthesizer(monkeypatch, fail_at=2)
    with pytest.raises(_Boom):
        write_demo_dataset(root, **SMALL, seed=1)
    assert _files(root) == before
    assert [p.name for p in tmp_path.iterdir()] == ["ct"]


def test_a_folder_another_process_finished_meanwhile_is_kept(tmp_path, monkeypatch):
    """Two runs generating the same demo folder at once (two tests, two ``torchrun`` nodes): the one that finishes
    second keeps the first one's folder, which a run may already be reading, and throws its own copy away."""
    root = tmp_path / "ct"
    real = demo.synthesize_ct_slice
    finished = {}

    def synthesize(rng: np.random.Generator, size: int = 256, label_maps: bool = False) -> tuple[np.ndarray, ...]:
        if not finished:  # the other process, while this one is still at its first slice
            monkeypatch.setattr(demo, "synthesize_ct_slice", real)
            write_demo_dataset(root, **SMALL)
            finished["inode"], finished["mtimes"] = root.stat().st_ino, _mtimes(root)
        return real(rng, size, label_maps)

    monkeypatch.setattr(demo, "synthesize_ct_slice", synthesize)
    write_demo_dataset(root, **SMALL)
    assert finished and root.stat().st_ino == finished["inode"] and _mtimes(root) == finished["mtimes"]
    assert [p.name for p in tmp_path.iterdir()] == ["ct"]  # the second copy is gone


def test_never_replaces_a_folder_it_did_not_write(tmp_path, monkeypatch):
    user = tmp_path / "lung_ct"  # the layout of a real dataset: images/, masks/, pairs.csv
    for sub in ("images", "masks"):
        (user / sub).mkdir(parents=True)
        (user / sub / "ID_0000.tif").write_bytes(b"user data")
    (user / "pairs.csv").write_text("filename,split\nID_0000.tif,train\n")
    before = _files(user)
    _failing_synthesizer(monkeypatch)  # refused before any slice is made
    with pytest.raises(FileExistsError):
        write_demo_dataset(user, **SMALL)
    with pytest.raises(FileExistsError):
        ensure_demo_dataset(user, **SMALL)
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError):
        write_demo_dataset(tmp_path / "file", **SMALL)
    assert _files(user) == before and (tmp_path / "file").read_text() == "x"


def test_writes_into_an_empty_folder(tmp_path):
    (tmp_path / "ct").mkdir()
    assert is_complete_demo_dataset(write_demo_dataset(tmp_path / "ct", **SMALL), **SMALL)


def test_ensure_writes_the_label_maps_unless_asked_for_binary_masks(tmp_path):
    """The bundles' demo data (ensure_demo_dataset) has three structures; write_demo_dataset's default stays binary."""
    root = ensure_demo_dataset(tmp_path / "ct", **SMALL)
    assert is_complete_demo_dataset(root, **SMALL, label_maps=True) and (root / DATALIST_NAME).is_file()
    ensure_demo_dataset(root, **SMALL, label_maps=False)
    assert is_complete_demo_dataset(root, **SMALL, label_maps=False) and (root / "pairs.csv").is_file()
    assert not (root / DATALIST_NAME).exists()  # a binary dataset has no labels map
    ensure_demo_dataset(root, **SMALL)
    assert is_complete_demo_dataset(root, **SMALL, label_maps=True)
    binary = write_demo_dataset(tmp_path / "binary", **SMALL)
    assert json.loads((binary / MARKER_NAME).read_text())["label_maps"] is False


def test_ensure_reuses_a_complete_dataset(tmp_path, monkeypatch):
    root = ensure_demo_dataset(tmp_path / "ct", **SMALL)
    assert is_complete_demo_dataset(root, **SMALL, val_fraction=0.2, seed=0)
    before = _mtimes(root)
    _failing_synthesizer(monkeypatch)  # any regeneration would raise
    assert ensure_demo_dataset(root, **SMALL) == root
    assert ensure_demo_dataset(str(root), **SMALL, seed=0) == root
    assert _mtimes(root) == before


def test_ensure_regenerates_when_parameters_differ(tmp_path):
    root = ensure_demo_dataset(tmp_path / "ct", **SMALL)
    ensure_demo_dataset(root, num_cases=5, size=64)
    assert json.loads((root / MARKER_NAME).read_text())["num_cases"] == 5
    assert len(list((root / "images").iterdir())) == 5
    ensure_demo_dataset(root, num_cases=5, size=64, seed=3)
    assert json.loads((root / MARKER_NAME).read_text())["seed"] == 3


def test_ensure_regenerates_an_incomplete_or_older_dataset(tmp_path):
    root = ensure_demo_dataset(tmp_path / "ct", **SMALL)
    (root / "labels" / "case_0001.png").unlink()
    ensure_demo_dataset(root, **SMALL)
    assert (root / "labels" / "case_0001.png").is_file()
    marker = json.loads((root / MARKER_NAME).read_text())
    (root / MARKER_NAME).write_text(json.dumps({**marker, "version": marker["version"] - 1}))
    ensure_demo_dataset(root, **SMALL)
    assert json.loads((root / MARKER_NAME).read_text()) == marker


def test_ensure_without_arguments_asks_for_the_defaults(tmp_path, monkeypatch):
    root = ensure_demo_dataset(tmp_path / "ct", **SMALL)
    before = _files(root)
    _failing_synthesizer(monkeypatch)
    with pytest.raises(_Boom):  # 4 cases of 64 px are not the default 160 of 256 px: it starts regenerating
        ensure_demo_dataset(root)
    assert _files(root) == before  # and the failed attempt leaves the old dataset in place
    with pytest.raises(TypeError, match="num_case"):
        ensure_demo_dataset(root, num_case=4)


def test_make_demo_cli(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("make_demo", REPO / "datasets" / "make_demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    root = module.main(["--out", str(tmp_path / "ct"), "--num_cases", "2", "--size", "64", "--seed", "4"])
    assert str(root.resolve()) in capsys.readouterr().out
    assert is_complete_demo_dataset(root, num_cases=2, size=64, seed=4, label_maps=True)  # the bundles' demo data
    binary = module.main(["--out", str(tmp_path / "lungs"), "--num_cases", "2", "--size", "64", "--binary"])
    assert is_complete_demo_dataset(binary, num_cases=2, size=64, label_maps=False)
    with pytest.raises(SystemExit) as exc:
        module.main(["--out", str(tmp_path / "ct" / "images"), "--num_cases", "2", "--size", "64"])
    assert exc.value.code == 2


def test_the_demo_folder_is_beside_the_bundles():
    assert Path(demo.demo_dataset_dir(REPO / "bundles" / "unet")) == REPO / "datasets" / "demo_ct"


def test_the_demo_folder_of_installed_bundles_is_in_the_working_directory(tmp_path, monkeypatch):
    import pipeline.bundle

    monkeypatch.setattr(pipeline.bundle, "PACKAGED_BUNDLES_DIR", tmp_path / "site-packages" / "pipeline" / "bundles")
    monkeypatch.chdir(tmp_path)
    installed = tmp_path / "site-packages" / "pipeline" / "bundles" / "unet"
    assert Path(demo.demo_dataset_dir(installed)) == tmp_path / "datasets" / "demo_ct"  # for real: tests/test_wheel.py


def test_ensure_if_demo_writes_only_the_demo_folder(tmp_path, monkeypatch):
    written = []
    monkeypatch.setattr(demo, "ensure_demo_dataset", lambda root, **kw: written.append(root))
    assert demo.ensure_if_demo(tmp_path / "mine", tmp_path / "demo") == str(tmp_path / "mine") and written == []
    assert demo.ensure_if_demo(tmp_path / "demo", tmp_path / "demo") == str(tmp_path / "demo")
    assert written == [tmp_path / "demo"]
