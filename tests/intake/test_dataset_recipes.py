"""Dataset recipes on tiny fake copies of each publisher's layout, and on the real samples when they are present."""

from __future__ import annotations

import importlib
import importlib.util
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.intake import (
    DatasetCheckError,
    check_bundle_overrides,
    check_dataset,
    dataset_segment,
    dataset_structures,
    load_datalist,
    prepare_dataset,
    split_datalist,
)
from pipeline.io import LoadSlice
from pipeline.segments import SEGMENTS

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data"
RNG = np.random.default_rng(0)


def _disc(shape: tuple[int, int], centre: tuple[int, int], radius: int) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


def _save(array: np.ndarray, path: Path, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kwargs)
    return path


def _noisy_jpeg_mask(mask: np.ndarray, path: Path) -> Path:
    """A 3-channel JPEG mask, as Kvasir ships them: compression leaves grey values along the edge."""
    rgb = np.repeat(np.where(mask, 255, 0).astype(np.uint8)[..., None], 3, axis=2)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=75)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())
    return path


def _kaggle(root: Path, n: int = 6, images: str = "2d_images", masks: str = "2d_masks") -> Path:
    for i in range(n):
        name = f"ID_{i:04d}_Z_{100 + i:04d}.tif"
        hu = RNG.integers(-1000, 400, (32, 32)).astype(np.int16)
        _save(hu, root / images / name)
        _save(np.where(_disc((32, 32), (16, 10 + i), 6), 255, 0).astype(np.uint8), root / masks / name)
    return root


def _kvasir(root: Path, n: int = 5) -> Path:
    for i in range(n):
        shape = (40 + 4 * i, 48 + 2 * i)  # varying sizes
        name = f"cju{i:03d}x.jpg"
        _save(RNG.integers(0, 255, (*shape, 3)).astype(np.uint8), root / "images" / name, quality=90)
        _noisy_jpeg_mask(_disc(shape, (20, 24), 10), root / "masks" / name)
    return root


def _montgomery(root: Path, n: int = 5) -> Path:
    for i in range(n):
        name = f"MCUCXR_{i:04d}_{i % 2}.png"
        _save(RNG.integers(0, 255, (48, 40)).astype(np.uint8), root / "CXR_png" / name)
        left = np.zeros((48, 40), bool)
        left[10:40, 22:34] = True
        right = np.zeros((48, 40), bool)
        right[10:40, 4:16] = True
        _save(np.where(left, 255, 0).astype(np.uint8), root / "ManualMask" / "leftMask" / name)
        _save(np.where(right, 255, 0).astype(np.uint8), root / "ManualMask" / "rightMask" / name)
    return root


def _folder(root: Path, n: int = 5) -> Path:
    for i in range(n):
        _save(RNG.integers(0, 255, (24, 24)).astype(np.uint8), root / "scans" / f"s{i}.png")
        _save(np.where(_disc((24, 24), (12, 12), 5), 1, 0).astype(np.uint8), root / "labels" / f"s{i}_seg.png")
    return root


def _body_ct(shape: tuple[int, int], lungs: np.ndarray) -> np.ndarray:
    """An axial CT slice in HU: air, an elliptic body at 40 HU, and ``lungs`` in it at -850 HU."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    body = ((yy - shape[0] / 2) / (shape[0] * 0.45)) ** 2 + ((xx - shape[1] / 2) / (shape[1] * 0.45)) ** 2 <= 1
    return np.where(lungs & body, -850, np.where(body, 40, -1000)).astype(np.int16)


SIDES_SHAPE = (48, 64)
SIDE_CASES = {  # the slices of _kaggle_sides: the mask, and the kind of slice split_lung_sides finds
    "ID_0000_Z_0100": (_disc(SIDES_SHAPE, (24, 18), 9) | _disc(SIDES_SHAPE, (24, 46), 9), "two lungs apart"),
    "ID_0001_Z_0101": (_disc(SIDES_SHAPE, (24, 23), 10) | _disc(SIDES_SHAPE, (24, 41), 10), "touching lungs split"),
    "ID_0002_Z_0102": (_disc(SIDES_SHAPE, (24, 46), 9), "one lung"),
    "ID_0003_Z_0103": (
        _disc(SIDES_SHAPE, (24, 18), 9) | _disc(SIDES_SHAPE, (24, 46), 9) | _disc(SIDES_SHAPE, (8, 32), 0),
        "two lungs apart",
    ),
}


def _kaggle_sides(root: Path) -> Path:
    """The lung CT layout of ../shared/data/lung_ct: int16 HU TIFF slices, {0, 1} TIFF masks, a pairs.csv split."""
    for name, (mask, _) in SIDE_CASES.items():
        _save(_body_ct(SIDES_SHAPE, mask), root / "images" / f"{name}.tif")
        _save(mask.astype(np.uint8), root / "masks" / f"{name}.tif")
    (root / "pairs.csv").write_text(
        "filename,split\n" + "".join(f"{n}.tif,{'val' if i == 0 else 'train'}\n" for i, n in enumerate(SIDE_CASES))
    )
    return root


STRUCTURE_SHAPE = (48, 40)
STRUCTURE_MASKS = {  # drawn so that the heart overlaps both lungs
    "right": np.zeros(STRUCTURE_SHAPE, bool),
    "left": np.zeros(STRUCTURE_SHAPE, bool),
    "heart": _disc(STRUCTURE_SHAPE, (32, 20), 8),
}
STRUCTURE_MASKS["right"][10:40, 4:16] = True  # the patient's right lung, on the image's left
STRUCTURE_MASKS["left"][10:40, 22:34] = True


def _structures(root: Path, n: int = 4, heart_format: str = "png") -> Path:
    """One folder per structure, each mask in another format: PNG 0/255, TIFF {0, 1}, and the heart as given."""
    for i in range(n):
        _save(RNG.integers(0, 255, STRUCTURE_SHAPE).astype(np.uint8), root / "images" / f"case_{i}.png")
        _save(np.where(STRUCTURE_MASKS["right"], 255, 0).astype(np.uint8), root / "masks" / "right" / f"case_{i}.png")
        _save(STRUCTURE_MASKS["left"].astype(np.uint8), root / "masks" / "left" / f"case_{i}.tif")
        heart = root / "masks" / "heart" / f"case_{i}.{heart_format}"
        if heart_format == "jpg":
            _noisy_jpeg_mask(STRUCTURE_MASKS["heart"], heart)
        else:
            _save(np.where(STRUCTURE_MASKS["heart"], 255, 0).astype(np.uint8), heart)
    return root


THREE = {"structure": ["right lung=masks/right", "left lung=masks/left", "heart=masks/heart"]}

LAYOUTS = [
    ("kaggle_lung", lambda root: _kaggle(root), {}, 6),
    ("kaggle_lung", lambda root: _kaggle(root / "finding-lungs", 6) and root / "finding-lungs", {}, 6),
    ("kvasir", lambda root: _kvasir(root / "Kvasir-SEG") and root, {}, 5),  # the Kvasir-SEG zip's top folder
    ("kvasir", lambda root: _kvasir(root / "segmented-images") and root, {}, 5),  # HyperKvasir
    ("montgomery", lambda root: _montgomery(root / "MontgomerySet") and root, {}, 5),
    ("folder", lambda root: _folder(root), {"image_dir": "scans", "mask_dir": "labels", "mask_suffix": "_seg"}, 5),
    ("kaggle_lung_sides", _kaggle_sides, {}, 4),
    ("montgomery", _montgomery, {"label_maps": True}, 5),
    ("structures", _structures, THREE, 4),
    ("structures", lambda root: _structures(root, heart_format="jpg"), THREE, 4),
]


@pytest.mark.parametrize("recipe, make, options, count", LAYOUTS)
def test_recipe_writes_a_datalist_that_trains(tmp_path, recipe, make, options, count):
    source = make(tmp_path / "source")
    path = prepare_dataset(recipe, source, tmp_path / "out", num_folds=3, seed=0, **options)
    datalist = json.loads(path.read_text())
    assert datalist["recipe"] == recipe and datalist["num_folds"] == 3
    assert sorted(datalist["fold_sizes"]) == sorted(np.bincount([e["fold"] for e in datalist["training"]]).tolist())
    items = load_datalist(path)
    assert len(items) == count
    loader = LoadSlice()
    for item in items:
        image, label = loader(item["image"]), loader(item["label"])
        assert image.shape[-2:] == label.shape[-2:], item["name"]
    split = split_datalist(items, fold=2)
    assert len(split["val"]) == datalist["fold_sizes"][2] and len(split["train"]) == count - len(split["val"])
    if "labels" in datalist:  # label maps: what the pre-flight check of a dataset of several structures accepts
        structures = dataset_structures(path)
        assert [s["value"] for s in structures] == list(range(1, len(datalist["labels"])))
        assert not check_dataset(items, structures=structures).fatal
        assert "segment" not in datalist and {"label_overlap", "label_sides"} & set(datalist)


def test_folds_are_seeded(tmp_path):
    source = _kvasir(tmp_path / "source", n=10)
    folds = {}
    for seed in (0, 0, 1):
        path = prepare_dataset("kvasir", source, tmp_path / f"out{seed}", num_folds=5, seed=seed)
        folds.setdefault(seed, []).append([e["fold"] for e in json.loads(path.read_text())["training"]])
    assert folds[0][0] == folds[0][1] and folds[0][0] != folds[1][0]


@pytest.mark.parametrize("mode", ["L", "1"])  # 0/255 grey masks as published, and 1-bit {0, 1} masks
def test_montgomery_merges_left_and_right(tmp_path, mode):
    source = _montgomery(tmp_path / "MontgomerySet", n=3)
    for mask in (source / "ManualMask").rglob("*.png"):
        Image.open(mask).convert(mode).save(mask)
    path = prepare_dataset("montgomery", source, tmp_path / "out", num_folds=3)
    item = load_datalist(path)[0]
    mask = np.asarray(Image.open(item["label"]))
    assert Path(item["label"]).parent == tmp_path / "out" / "masks"
    assert mask.shape == (48, 40) and set(np.unique(mask)) == {0, 255}
    assert mask[20, 8] == 255 and mask[20, 28] == 255 and mask[20, 19] == 0 and mask[5, 8] == 0


def _label_map(item: dict) -> np.ndarray:
    return np.asarray(Image.open(item["label"]))


@pytest.mark.parametrize(
    "order, winner",
    [
        (["right lung=masks/right", "left lung=masks/left", "heart=masks/heart"], "heart"),
        (["heart=masks/heart", "right lung=masks/right", "left lung=masks/left"], "lungs"),
    ],
)
def test_structures_later_wins_where_masks_overlap(tmp_path, caplog, order, winner):
    source = _structures(tmp_path / "source", n=3)
    with caplog.at_level("INFO"):
        path = prepare_dataset("structures", source, tmp_path / "out", num_folds=3, structure=order)
    datalist = json.loads(path.read_text())
    names = [entry.split("=")[0] for entry in order]
    assert datalist["labels"] == {"0": "background", **{str(v): n for v, n in enumerate(names, start=1)}}
    value = {name: v for v, name in enumerate(names, start=1)}
    masks = dict(zip(["right lung", "left lung", "heart"], STRUCTURE_MASKS.values(), strict=True))
    expected = np.zeros(STRUCTURE_SHAPE, np.uint8)
    for name in names:  # later over earlier
        expected[masks[name]] = value[name]
    for item in load_datalist(path):
        assert Path(item["label"]).parent == tmp_path / "out" / "labels" and item["label"].endswith(".png")
        label = _label_map(item)
        assert label.dtype == np.uint8 and (label == expected).all()
        assert label[32, 14] == value["heart" if winner == "heart" else "right lung"]  # heart over the right lung
    overlap = {lung: int((masks[lung] & masks["heart"]).sum()) * 3 for lung in ("right lung", "left lung")}
    pairs = {f"heart over {lung}" if winner == "heart" else f"{lung} over heart": n for lung, n in overlap.items()}
    assert datalist["label_overlap"]["pixels"] == dict(sorted(pairs.items())) and all(overlap.values())
    later = " over ".join(reversed(names))
    assert datalist["label_overlap"]["rule"].endswith(f"the structure given later wins: {later}")
    assert f"{sorted(pairs)[0]}: {pairs[sorted(pairs)[0]] // 3} px" in caplog.text  # each case's overlap is logged


def test_structures_missing_mask_can_be_left_empty(tmp_path, caplog):
    source = _structures(tmp_path / "source", n=3)
    (source / "masks" / "left" / "case_1.tif").unlink()
    with caplog.at_level("INFO"):
        path = prepare_dataset("structures", source, tmp_path / "out", num_folds=3, missing_masks="empty", **THREE)
    assert "[warning] images/case_1.png: no left lung mask in masks/left" in caplog.text
    assert "that structure is left empty" in caplog.text
    labels = {Path(item["image"]).name: _label_map(item) for item in load_datalist(path)}
    assert set(np.unique(labels["case_1.png"])) == {0, 1, 3} and set(np.unique(labels["case_0.png"])) == {0, 1, 2, 3}
    (source / "masks" / "right" / "case_1.png").unlink()
    (source / "masks" / "heart" / "case_1.png").unlink()
    with pytest.raises(DatasetCheckError, match=r"images/case_1\.png: image has no matching mask"):
        prepare_dataset("structures", source, tmp_path / "out2", missing_masks="empty", **THREE)


@pytest.mark.parametrize(
    "recipe, options, match",
    [
        ("structures", {}, "needs --structure"),
        ("structures", {"structure": ["right lung"]}, 'expected "NAME=FOLDER"'),
        ("structures", {"structure": ["lung=masks/right", "Lung=masks/left"]}, "given to two values"),
        ("structures", {"structure": ["heart=masks/none"]}, r"masks/none: not a folder \(the masks of 'heart'"),
        ("structures", {**THREE, "image_dir": "scans"}, "scans: not a folder"),
        ("structures", {**THREE, "missing_masks": "skip"}, "missing_masks must be one of"),
        ("structures", {**THREE, "segment": "lung"}, "writes label maps, named by its structures; it takes no segment"),
        ("kvasir", {"label_maps": True}, "does not take the options"),
        ("kaggle_lung_sides", {"structure": ["heart=masks/heart"]}, "does not take the options"),
    ],
)
def test_wrong_structures(tmp_path, recipe, options, match):
    source = _structures(tmp_path / "source", n=2)
    with pytest.raises(ValueError, match=match):
        prepare_dataset(recipe, source, tmp_path / "out", **options)


def test_montgomery_keeps_the_lungs_apart(tmp_path, caplog):
    source = _montgomery(tmp_path / "MontgomerySet", n=3)
    with caplog.at_level("INFO"):
        path = prepare_dataset("montgomery", source, tmp_path / "out", num_folds=3, label_maps=True)
    datalist = json.loads(path.read_text())
    assert datalist["labels"] == {"0": "background", "1": "right lung", "2": "left lung"}
    assert datalist["label_overlap"] == {
        "rule": "one binary mask per structure, values 1..2 in the order given; where masks overlap, the structure "
        "given later wins: left lung over right lung",
        "pixels": {},
    }
    label = _label_map(load_datalist(path)[0])
    assert label[20, 8] == 1 and label[20, 28] == 2 and label[20, 19] == 0 and label[5, 8] == 0
    assert "WARNING" not in caplog.text
    # masks that name the image's sides instead of the patient's are pointed out
    right, left = (source / "ManualMask" / f"{side}Mask" for side in ("right", "left"))
    right.rename(tmp_path / "swap")
    left.rename(right)
    (tmp_path / "swap").rename(left)
    with caplog.at_level("WARNING"):
        prepare_dataset("montgomery", source, tmp_path / "out2", num_folds=3, label_maps=True)
    assert "the right lung mask lies in the image's right half" in caplog.text


def test_kaggle_lung_sides(tmp_path, caplog):
    source = _kaggle_sides(tmp_path / "lung_ct")
    with caplog.at_level("INFO"):
        path = prepare_dataset("kaggle_lung_sides", source, tmp_path / "out", num_folds=2)
    datalist = json.loads(path.read_text())
    assert datalist["labels"] == {"0": "background", "1": "right lung", "2": "left lung"}
    assert datalist["bundle_overrides"] == {"modality": "CT"}
    assert "connected components" in datalist["label_sides"]["rule"]
    assert datalist["label_sides"]["slices"] == {
        "one lung": 1,
        "specks dropped": 1,
        "touching lungs split": 1,
        "two lungs apart": 2,
    }
    items = load_datalist(path)
    assert [Path(i["image"]).name for i in split_datalist(items)["val"]] == ["ID_0000_Z_0100.tif"]  # given split
    for item in items:
        mask, _ = SIDE_CASES[Path(item["image"]).stem]
        label = _label_map(item)
        assert label[24, 18] == int(mask[24, 18]) and label[24, 46] == 2 and label[8, 32] == 0  # the speck dropped
    assert "ID_0001_Z_0101.tif: the lungs touch" in caplog.text
    assert "ID_0002_Z_0102.tif: one lung only: the left lung" in caplog.text
    assert "ID_0003_Z_0103.tif: dropped 1 speck(s) of 1 px" in caplog.text


def test_kaggle_keeps_the_given_split(tmp_path):
    source = _kaggle(tmp_path / "lung", images="images", masks="masks")
    names = sorted(p.name for p in (source / "images").iterdir())
    (source / "pairs.csv").write_text(
        "filename,split\n" + "".join(f"{n},{'val' if i < 2 else 'train'}\n" for i, n in enumerate(names))
    )
    items = load_datalist(prepare_dataset("kaggle_lung", source, tmp_path / "out", num_folds=3))
    split = split_datalist(items)  # no fold: the publisher's split
    assert sorted(Path(i["image"]).name for i in split["val"]) == names[:2]


def _drop_one_mask(root: Path) -> str:
    victim = sorted((root / "masks").iterdir())[1]
    victim.unlink()
    return victim.name


def _drop_right_mask(root: Path) -> str:
    victim = sorted((root / "ManualMask" / "rightMask").iterdir())[0]
    victim.unlink()
    return f"CXR_png/{victim.name}: no right lung mask in ManualMask/rightMask"


def _orphan_left_mask(root: Path) -> str:
    victim = sorted((root / "CXR_png").iterdir())[-1]
    victim.unlink()
    return f"leftMask/{victim.name}"


def _corrupt_image(root: Path) -> str:
    victim = sorted((root / "images").iterdir())[0]
    victim.write_bytes(b"not a jpeg")
    return victim.name


def _drop_left_lung(root: Path) -> str:
    (root / "masks" / "left" / "case_1.tif").unlink()
    return "images/case_1.png: no left lung mask in masks/left (no file named case_1 with an image suffix)"


def _stray_heart(root: Path) -> str:
    _save(np.zeros(STRUCTURE_SHAPE, np.uint8), root / "masks" / "heart" / "stray.png")
    return "masks/heart/stray.png: mask has no matching image"


def _label_map_as_structure(root: Path) -> str:
    _save(np.repeat(np.arange(3, dtype=np.uint8), 16)[None, :40].repeat(48, 0), root / "masks" / "heart" / "case_2.png")
    return "masks/heart/case_2.png: mask is not binary"


@pytest.mark.parametrize(
    "recipe, make, damage, options",
    [
        ("kaggle_lung", lambda r: _kaggle(r, images="images", masks="masks"), _drop_one_mask, {}),
        ("kvasir", _kvasir, _corrupt_image, {}),
        ("montgomery", _montgomery, _drop_right_mask, {}),
        ("montgomery", _montgomery, _drop_right_mask, {"label_maps": True}),
        ("montgomery", _montgomery, _orphan_left_mask, {}),
        ("structures", _structures, _drop_left_lung, THREE),
        ("structures", _structures, _stray_heart, THREE),
        ("structures", _structures, _label_map_as_structure, THREE),
        ("kaggle_lung_sides", _kaggle_sides, _drop_one_mask, {}),
    ],
)
def test_bad_source_is_named(tmp_path, recipe, make, damage, options):
    source = make(tmp_path / "source")
    victim = damage(source)
    with pytest.raises(DatasetCheckError, match=re.escape(victim)):
        prepare_dataset(recipe, source, tmp_path / "out", num_folds=2, **options)
    assert not (tmp_path / "out").exists()  # nothing is written, not even Montgomery's merged masks


def test_same_name_twice_is_refused(tmp_path):
    source = _kvasir(tmp_path / "source", n=2)
    (source / "images" / "cju000x.png").write_bytes((source / "images" / "cju000x.jpg").read_bytes())
    with pytest.raises(ValueError, match=r"cju000x\.jpg and cju000x\.png have the same name"):
        prepare_dataset("kvasir", source, tmp_path / "out")


def test_kaggle_pairs_csv_with_image_and_mask_columns(tmp_path):
    source = _kaggle(tmp_path / "lung", images="images", masks="masks")
    names = sorted(p.name for p in (source / "images").iterdir())
    (source / "pairs.csv").write_text(
        "image,mask,split\n" + "".join(f"{n},{n},train\n" for n in names[1:]) + f"{names[0]},{names[0]},val\n"
    )
    items = load_datalist(prepare_dataset("kaggle_lung", source, tmp_path / "out", num_folds=2))
    assert [Path(i["image"]).name for i in split_datalist(items)["val"]] == names[:1]
    (source / "pairs.csv").write_text("file,split\nx.tif,train\n")
    with pytest.raises(ValueError, match="expected a 'filename' or an 'image' column"):
        prepare_dataset("kaggle_lung", source, tmp_path / "out2", num_folds=2)


def test_datalist_behind_a_symlink(tmp_path):
    """Relative paths are computed on resolved folders, so a symlinked output folder still points at the files."""
    source = _kvasir(tmp_path / "data" / "src", n=3)
    (tmp_path / "real" / "deep").mkdir(parents=True)
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "out").symlink_to(tmp_path / "real" / "deep")
    items = load_datalist(prepare_dataset("kvasir", source, tmp_path / "work" / "out" / "kvasir", num_folds=3))
    assert all(Path(i["image"]).is_file() and Path(i["label"]).is_file() for i in items)


@pytest.mark.parametrize(
    "recipe, options, match",
    [
        ("nope", {}, "unknown recipe 'nope'"),
        ("kaggle_lung", {}, "no mask folder; expected one of 2d_masks, masks"),
        ("kvasir", {}, "expected images/ and masks/"),
        ("montgomery", {}, "no image folder; expected one of CXR_png"),
        ("folder", {"mask_dir": "labels"}, "labels: not a folder"),
        ("kvasir", {"mask_suffix": "_m"}, "does not take the options"),
    ],
)
def test_wrong_layout(tmp_path, recipe, options, match):
    (tmp_path / "src" / "images").mkdir(parents=True)
    with pytest.raises(ValueError, match=match):
        prepare_dataset(recipe, tmp_path / "src", tmp_path / "out", **options)


def test_cli(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("prepare", REPO / "datasets" / "prepare.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    main = module.main
    source = _kvasir(tmp_path / "source")
    path = main(["kvasir", "--source", str(source), "--out", str(tmp_path / "out"), "--num_folds", "5"])
    assert path.is_file() and "--fold N" in capsys.readouterr().out
    assert json.loads(path.read_text())["bundle_overrides"] == {"modality": "ES", "in_channels": 3}
    assert json.loads(path.read_text())["segment"]["label"] == "Polyp"
    path = main(["kvasir", "--source", str(source), "--out", str(tmp_path / "out3"), "--segment", "tissue"])
    assert json.loads(path.read_text())["segment"]["label"] == "Tissue"
    with pytest.raises(SystemExit) as raised:
        main(["kvasir", "--source", str(tmp_path / "missing"), "--out", str(tmp_path / "out2")])
    assert raised.value.code == 2
    with pytest.raises(SystemExit) as raised:  # an option of another recipe is refused, not ignored
        main(["kvasir", "--source", str(source), "--out", str(tmp_path / "out4"), "--label_maps"])
    assert raised.value.code == 2 and "does not take the options ['label_maps']" in capsys.readouterr().err


def test_cli_structures(tmp_path):
    source = _structures(tmp_path / "source", n=2)
    args = ["structures", "--source", str(source), "--out", str(tmp_path / "out"), "--num_folds", "2"]
    args += ["--structure", "right lung=masks/right", "--structure", "heart=masks/heart", "--missing_masks", "error"]
    path = importlib.import_module("pipeline.intake.prepare").prepare_main(args)
    assert json.loads(path.read_text())["labels"] == {"0": "background", "1": "right lung", "2": "heart"}
    assert [s["label"] for s in dataset_structures(path)] == ["Right lung", "Heart"]


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is not present")
@pytest.mark.parametrize(
    "recipe, folder, count",
    [("kaggle_lung", "lung_ct", 214), ("kvasir", "kvasir_sample", 5), ("kaggle_lung_sides", "lung_ct", 214)],
)
def test_real_samples(tmp_path, recipe, folder, count):
    path = prepare_dataset(recipe, SHARED / folder, tmp_path, num_folds=5, seed=0)
    items = load_datalist(path)
    assert len(items) == count and all(Path(i["image"]).is_file() and Path(i["label"]).is_file() for i in items)
    if recipe == "kaggle_lung_sides":  # the figures measured when the recipe was written
        assert json.loads(path.read_text())["label_sides"]["slices"] == {
            "air outside the body dropped": 3,
            "one lung": 1,
            "specks dropped": 18,
            "touching lungs split": 18,
            "two lungs apart": 195,
        }


def test_bundle_overrides_are_checked(tmp_path, caplog):
    path = prepare_dataset("kvasir", _kvasir(tmp_path / "source", n=2), tmp_path / "out", num_folds=2)
    with caplog.at_level("WARNING"):
        messages = check_bundle_overrides(path, modality="CT", in_channels=1)
    assert messages == [
        "datalist.json asks for --modality ES but this run uses 'CT'",
        "datalist.json asks for --in_channels 3 but this run uses 1",
    ]
    assert "asks for --modality ES" in caplog.text
    assert check_bundle_overrides(tmp_path / "out", modality="ES", in_channels=3) == []  # found in the folder
    assert check_bundle_overrides(tmp_path / "source", modality="CT") == []  # no datalist: nothing to check


@pytest.mark.parametrize("recipe, label", [("kvasir", "Polyp"), ("folder", "Tissue")])
def test_datalist_says_what_is_segmented(tmp_path, recipe, label):
    path = prepare_dataset(recipe, _kvasir(tmp_path / "source", n=2), tmp_path / "out", num_folds=2)
    segment = dataset_segment(path)
    assert segment == SEGMENTS[label.lower()].to_config() and segment["label"] == label
    assert dataset_segment(tmp_path / "out") == segment  # found in the folder
    assert dataset_segment(tmp_path / "nowhere") == SEGMENTS["lung"].to_config()  # the demo before it exists


@pytest.mark.parametrize(
    "segment, problem",
    [
        ({"label": ""}, "label must be a non-empty string"),
        ({"category": ["49755003"]}, "category must be a [SNOMED code, meaning] pair"),
        ({"color": [300, 0, 0]}, "color must be [R, G, B] whole numbers in 0-255"),
        ({"colour": [1, 2, 3]}, "unknown key(s) ['colour']"),
        ("Polyp", "segment must be a dict"),
    ],
)
def test_malformed_segment_in_a_datalist_is_named(tmp_path, segment, problem):
    path = tmp_path / "datalist.json"
    path.write_text(json.dumps({"training": [], "segment": segment}))
    with pytest.raises(ValueError) as raised:
        dataset_segment(path)
    assert str(raised.value).startswith(str(path)) and problem in str(raised.value)
