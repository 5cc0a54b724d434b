from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.intake import (
    assign_folds,
    dataset_segment,
    dataset_structures,
    load_datalist,
    select_split,
    split_datalist,
)


def _touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")


def _folder(root: Path, images: list[str], masks: list[str]) -> Path:
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    for name in images:
        _touch(root / "images" / name)
    for name in masks:
        _touch(root / "masks" / name)
    return root


@pytest.mark.parametrize(
    "images, masks, expected",
    [
        (["a.tif", "b.tif"], ["a.tif", "b.tif"], [("a.tif", "a.tif"), ("b.tif", "b.tif")]),
        (["a.jpg"], ["a.png"], [("a.jpg", "a.png")]),  # suffixes may differ
        (["a.nii.gz"], ["a.nii.gz"], [("a.nii.gz", "a.nii.gz")]),
        (["a.png", "b.png"], ["a.png"], [("a.png", "a.png"), ("b.png", None)]),  # missing mask kept, not dropped
        (["a.png"], ["a.png", "c.png"], [("a.png", "a.png"), (None, "c.png")]),  # orphan mask kept
        (["a.png", "README.txt"], ["a.png"], [("a.png", "a.png")]),  # non-image files ignored
    ],
)
def test_folder_pairs(tmp_path, images, masks, expected):
    items = load_datalist(_folder(tmp_path, images, masks))
    got = [
        (Path(i["image"]).name if i["image"] else None, Path(i["label"]).name if i["label"] else None) for i in items
    ]
    assert got == expected
    assert all(i["split"] == "" for i in items)


def test_pairs_csv_split_and_names(tmp_path):
    root = _folder(tmp_path, ["a.tif", "b.tif", "c.tif"], ["a.tif", "b.tif", "c.tif"])
    (root / "pairs.csv").write_text("filename,split\na.tif,train\nb.tif,val\nc.tif,train\n")
    items = load_datalist(root)
    assert [(Path(i["image"]).name, i["split"]) for i in items] == [
        ("a.tif", "train"),
        ("b.tif", "val"),
        ("c.tif", "train"),
    ]
    splits = split_datalist(items, val_fraction=0.5, seed=3)
    assert [Path(i["image"]).name for i in splits["val"]] == ["b.tif"]


def test_pairs_csv_image_mask_columns(tmp_path):
    root = _folder(tmp_path, ["x.jpg"], ["x_mask.png"])
    (root / "pairs.csv").write_text("image,mask\nx.jpg,x_mask.png\n")
    (item,) = load_datalist(root)
    assert Path(item["image"]).name == "x.jpg" and Path(item["label"]).name == "x_mask.png"


def test_pairs_csv_bad_split_value(tmp_path):
    root = _folder(tmp_path, ["a.tif"], ["a.tif"])
    (root / "pairs.csv").write_text("filename,split\na.tif,holdout\n")
    with pytest.raises(ValueError, match=r"pairs.csv line 2.*holdout"):
        load_datalist(root)


def test_decathlon_json(tmp_path):
    _folder(tmp_path, ["a.png", "b.png", "c.png"], ["a.png", "b.png", "c.png"])
    datalist = {
        "training": [
            {"image": "images/a.png", "label": "masks/a.png"},
            {"image": "images/b.png", "label": "masks/b.png"},
        ],
        "validation": [{"image": "images/c.png", "label": "masks/c.png"}],
    }
    (tmp_path / "dataset.json").write_text(json.dumps(datalist))
    for source in (tmp_path, tmp_path / "dataset.json"):
        items = load_datalist(source)
        assert [i["split"] for i in items] == ["", "", "val"]
        assert Path(items[2]["label"]) == tmp_path / "masks" / "c.png"
        splits = split_datalist(items)
        assert len(splits["train"]) == 2 and len(splits["val"]) == 1


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda root: root / "missing", "does not exist"),
        (lambda root: root, "expected 'images/' and 'masks/'"),
        (lambda root: _folder(root, [], []), "no image/mask pairs"),
        (lambda root: (root / "d.json").write_text("{}") and root / "d.json", "'training' list"),
        (lambda root: (root / "d.json").write_text("{not json") and root / "d.json", "cannot read"),
    ],
)
def test_bad_sources(tmp_path, make, match):
    with pytest.raises(ValueError, match=match):
        load_datalist(make(tmp_path))


@pytest.mark.parametrize(
    "csv_text, match",
    [
        ("image,mask\na.tif,a.tif\n,a.tif\n", r"pairs.csv line 3: no image file name"),  # an empty cell
        ("image,mask\na.tif\n", r"pairs.csv line 2: no mask file name"),  # a short row
        ("filename,split\na.tif,train\n ,val\n", r"pairs.csv line 3: no image file name"),  # blank name
    ],
)
def test_malformed_pairs_csv_names_the_line(tmp_path, csv_text, match):
    root = _folder(tmp_path, ["a.tif"], ["a.tif"])
    (root / "pairs.csv").write_text(csv_text)
    with pytest.raises(ValueError, match=match):
        load_datalist(root)


@pytest.mark.parametrize(
    "entry, match",
    [
        ({"image": 123, "label": "masks/a.png"}, r"item 0 of 'training': 'image' must be a file path .* got 123"),
        ({"image": "", "label": "masks/a.png"}, r"'image' must be a file path .* got ''"),
        ({"image": None}, r"'image' must be a file path .* got None"),
        ({"image": "images/a.png", "label": ["masks/a.png"]}, r"'label' must be a file path .* got \['masks/a.png'\]"),
        ({"image": "images/a.png", "label": 7}, r"'label' must be a file path .* got 7"),
    ],
)
def test_malformed_datalist_entry_names_the_item(tmp_path, entry, match):
    path = tmp_path / "dataset.json"
    path.write_text(json.dumps({"training": [entry]}))
    with pytest.raises(ValueError, match=match) as raised:
        load_datalist(path)
    assert str(path) in str(raised.value)


def test_datalist_entry_without_label_is_an_image_without_mask(tmp_path):
    path = tmp_path / "dataset.json"
    path.write_text(json.dumps({"training": [{"image": "images/a.png"}, {"image": "images/b.png", "label": None}]}))
    assert [item["label"] for item in load_datalist(path)] == [None, None]  # the pre-flight reports them by name


def test_seeded_split_is_reproducible():
    items = [{"image": f"{i}.png", "label": f"{i}.png", "split": ""} for i in range(50)]
    a, b = split_datalist(items, 0.2, seed=1), split_datalist(items, 0.2, seed=1)
    c = split_datalist(items, 0.2, seed=2)
    assert a == b and a["val"] != c["val"]
    assert len(a["val"]) == 10 and len(a["train"]) == 40
    assert {i["image"] for i in a["train"]} | {i["image"] for i in a["val"]} == {i["image"] for i in items}


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1])
def test_split_bad_fraction(fraction):
    with pytest.raises(ValueError, match="val_fraction"):
        split_datalist([{"image": "a", "label": "a"}], fraction)


def test_split_refuses_empty_train():
    with pytest.raises(ValueError, match="train split is empty"):
        split_datalist([{"image": "a", "label": "a", "split": "val"}])


@pytest.mark.parametrize("num_items, num_folds", [(10, 5), (11, 5), (7, 2), (3, 3)])
def test_assign_folds_is_balanced_and_seeded(num_items, num_folds):
    folds = assign_folds(num_items, num_folds, seed=4)
    sizes = [folds.count(k) for k in range(num_folds)]
    assert max(sizes) - min(sizes) <= 1 and sum(sizes) == num_items
    assert folds == assign_folds(num_items, num_folds, seed=4)
    assert num_items < 7 or folds != assign_folds(num_items, num_folds, seed=5)


@pytest.mark.parametrize("num_items, num_folds", [(5, 1), (3, 4)])
def test_assign_folds_bad_count(num_items, num_folds):
    with pytest.raises(ValueError, match="num_folds"):
        assign_folds(num_items, num_folds)


def test_fold_split_covers_every_item_once():
    items = [{"name": f"c{i}", "split": "val" if i < 2 else "train"} for i in range(10)]
    vals = [split_datalist(items, fold=k, num_folds=5, seed=1)["val"] for k in range(5)]
    assert sorted(i["name"] for v in vals for i in v) == sorted(i["name"] for i in items)  # fixed split ignored
    first = split_datalist(items, fold=0, num_folds=5, seed=1)
    assert not {i["name"] for i in first["val"]} & {i["name"] for i in first["train"]}


def test_fold_split_uses_the_folds_in_the_items():
    items = [{"name": f"c{i}", "fold": i % 3} for i in range(9)]
    split = split_datalist(items, fold=2, num_folds=5)  # num_folds is ignored: the items carry 3 folds
    assert [i["name"] for i in split["val"]] == ["c2", "c5", "c8"]
    with pytest.raises(ValueError, match=r"fold must be in 0\.\.2"):
        split_datalist(items, fold=3)


def test_fold_split_refuses_partial_folds():
    items = [{"name": "a", "fold": 0}, {"name": "b"}, {"name": "c", "fold": 1}]
    with pytest.raises(ValueError, match="b: some items have a 'fold'"):
        split_datalist(items, fold=0)


SPLITS = {"train": [{"name": "a"}, {"name": "b"}], "val": [{"name": "c"}]}


@pytest.mark.parametrize("split, expected", [("train", ["a", "b"]), ("val", ["c"]), ("all", ["a", "b", "c"])])
def test_select_split(split, expected):
    items = SPLITS["train"] + SPLITS["val"]
    assert [i["name"] for i in select_split(items, SPLITS, split)] == expected


def test_select_split_names_the_choices():
    with pytest.raises(ValueError, match="--split 'test': use one of train, val, all"):
        select_split([], SPLITS, "test")


@pytest.mark.parametrize(
    "datalist, labels, expected",
    [
        ({"labels": {"0": "background", "1": "right lung", "2": "left lung"}}, None, ["Right lung", "Left lung"]),
        ({"labels": {"0": "background", "1": "heart"}}, {"1": "liver", "2": "spleen"}, ["Liver", "Spleen"]),
        ({"segment": {"label": "Polyp"}}, None, ["Polyp"]),
        ({}, None, ["Lung"]),
    ],
)
def test_dataset_structures_from_labels_override_or_segment(tmp_path, datalist, labels, expected):
    (tmp_path / "dataset.json").write_text(json.dumps({"training": [], **datalist}))
    segment = dataset_segment(tmp_path, "lung")
    structures = dataset_structures(tmp_path, labels=labels, segment=segment)
    assert [s["label"] for s in structures] == expected and structures[0]["value"] == 1


def test_a_malformed_labels_map_names_the_datalist(tmp_path):
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": {"0": "background", "one": "lung"}}))
    with pytest.raises(ValueError, match=r"dataset.json: labels: 'one' is not a label value"):
        dataset_structures(tmp_path)
