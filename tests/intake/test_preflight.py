from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from pipeline.intake import DatasetCheckError, check_dataset, load_datalist, preflight


def _write(path: Path, array: np.ndarray | Image.Image) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    (array if isinstance(array, Image.Image) else Image.fromarray(array)).save(path)
    return str(path)


def _image(shape=(32, 40)) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, shape, dtype=np.uint8)


def _mask(shape=(32, 40), high=1) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    mask[8:20, 10:30] = high
    return mask


def _noisy_edges(mask: np.ndarray) -> np.ndarray:
    """Compression-like noise: a few intermediate values on the mask's left edge."""
    noisy = mask.copy()
    noisy[8:20, 9] = 40
    noisy[8:20, 10] = 215
    return noisy


def _case(root: Path, name: str, image=None, mask=None) -> dict:
    item = {"image": None, "label": None, "name": name}
    if image is not None:
        item["image"] = _write(root / "images" / name, image)
    if mask is not None:
        item["label"] = _write(root / "masks" / name, mask)
    return item


CASES = [
    # (description, image, mask, expected fatal substring or None, expected warning substring or None)
    ("good {0,1}", _image(), _mask(), None, None),
    ("good {0,255}", _image(), _mask(high=255), None, None),
    ("missing mask", _image(), None, "image has no matching mask", None),
    ("missing image", None, _mask(), "mask has no matching image", None),
    ("shape mismatch", _image((32, 40)), _mask((32, 48)), "(32, 40) (H, W) but its mask", None),
    ("labels 0/1/2", _image(), _mask() + (np.arange(40)[None, :] > 35).astype(np.uint8) * 2, "not binary", None),
    ("empty mask", _image(), _mask(high=0), None, "mask is empty"),
    ("constant image", np.full((32, 40), 7, np.uint8), _mask(), None, "image is constant"),
    ("edge noise", _image(), _noisy_edges(_mask(high=255)), None, "distinct values at edges"),
    ("RGB mask", _image(), np.repeat(_mask(high=255)[..., None], 3, axis=2), None, "3-channel mask reduced"),
]


@pytest.mark.parametrize("desc, image, mask, fatal, warning", CASES, ids=[c[0] for c in CASES])
def test_single_case(tmp_path, desc, image, mask, fatal, warning):
    report = check_dataset([_case(tmp_path, "case.png", image, mask)])
    fatal_text = " ".join(f.problem for f in report.fatal)
    warn_text = " ".join(f.problem for f in report.warnings)
    if fatal is None:
        assert report.fatal == []
    else:
        assert fatal in fatal_text
        assert all("case.png" in f.case for f in report.fatal)
    if warning is None:
        assert report.warnings == []
    else:
        assert warning in warn_text


def test_unreadable_and_nan_files_are_named(tmp_path):
    broken = tmp_path / "images" / "broken.png"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    item_broken = {"image": str(broken), "label": _write(tmp_path / "masks" / "broken.png", _mask())}
    nan_image = np.full((32, 40), np.nan, np.float32)
    nan_path = tmp_path / "images" / "nan.tif"
    Image.fromarray(nan_image, mode="F").save(nan_path)
    item_nan = {"image": str(nan_path), "label": _write(tmp_path / "masks" / "nan.png", _mask())}
    report = check_dataset([item_broken, item_nan])
    problems = {f.case: f.problem for f in report.fatal}
    assert any("broken.png" in case and "unreadable image" in p for case, p in problems.items())
    assert any("nan.tif" in case and "NaN" in p for case, p in problems.items())


@pytest.mark.parametrize("max_pixels, refused", [(32 * 40 - 1, True), (32 * 40, False), (None, False)])
def test_images_over_the_pixel_limit_are_fatal_and_named(tmp_path, max_pixels, refused):
    """The pixel limit is checked from each file's header before decoding (the issue's 10000 x 10000 PNG took 9 GB)."""
    items = [_case(tmp_path, "wide.png", _image((32, 40)), _mask((32, 40)))]
    problems = [f"{f.case}: {f.problem}" for f in check_dataset(items, max_pixels=max_pixels).fatal]
    assert bool(problems) is refused
    if refused:
        assert "wide.png" in problems[0] and "32x40 pixels, more than the limit of 1,279" in problems[0]


def test_preflight_raises_once_with_every_problem(tmp_path):
    items = [
        _case(tmp_path, "ok.png", _image(), _mask()),
        _case(tmp_path, "nomask.png", _image(), None),
        _case(tmp_path, "bad.png", _image((32, 40)), _mask((30, 40))),
    ]
    with pytest.raises(DatasetCheckError) as err:
        preflight(items)
    message = str(err.value)
    assert "2 fatal problem(s)" in message and "nomask.png" in message and "bad.png" in message
    assert "ok.png" not in message


def test_preflight_passes_and_policy(tmp_path):
    items = [_case(tmp_path, "a.png", _image(), _mask()), _case(tmp_path, "b.png", _image(), _mask(high=0))]
    assert preflight(items) == items
    with pytest.raises(DatasetCheckError, match="mask is empty"):
        preflight(items, empty_masks="error")
    assert check_dataset(items, empty_masks="ignore").findings == []
    with pytest.raises(ValueError, match="empty_masks"):
        check_dataset(items, empty_masks="drop")


def test_noisy_jpeg_masks_pass(tmp_path):
    mask = _mask(high=255)
    path = tmp_path / "masks" / "m.jpg"
    path.parent.mkdir(parents=True)
    Image.fromarray(np.stack([mask] * 3, -1)).save(path, quality=75)
    assert len(np.unique(np.asarray(Image.open(path)))) > 2  # the JPEG really is noisy
    item = {"image": _write(tmp_path / "images" / "m.png", np.stack([_image()] * 3, -1)), "label": str(path)}
    assert check_dataset([item]).fatal == []


def test_folder_with_orphans_reports_by_name(tmp_path):
    _case(tmp_path, "a.png", _image(), _mask())
    _case(tmp_path, "b.png", _image(), None)
    report = check_dataset(load_datalist(tmp_path))
    assert [(f.case, f.problem) for f in report.fatal] == [("images/b.png", "image has no matching mask")]


def _hu_image(shape=(32, 40)) -> np.ndarray:
    image = np.full(shape, -1000, np.int16)  # air around a body of soft tissue
    image[4:28, 4:36] = 40
    return image


def _write_tif(path: Path, array: np.ndarray) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, array)
    return str(path)


# images, modality, in_channels, the warning expected (None: no warning)
MODALITY_CASES = [
    ("8-bit grey", _image(), "CT", 1, "never go below 0 (8-bit)"),
    ("8-bit grey as OT", _image(), "OT", 1, None),
    ("HU int16 as CT", _hu_image(), "CT", 1, None),
    ("HU int16 as XR", _hu_image(), "XR", 1, "look like CT in Hounsfield units"),
    ("RGB as CT", np.stack([_image()] * 3, -1), "CT", 3, "--modality CT on colour images"),
    ("RGB as ES, 1 channel", np.stack([_image()] * 3, -1), "ES", 1, "--in_channels 3 keeps colour"),
    ("RGB as ES, 3 channels", np.stack([_image()] * 3, -1), "ES", 3, None),
]


@pytest.mark.parametrize(
    "desc, image, modality, in_channels, expected", MODALITY_CASES, ids=[c[0] for c in MODALITY_CASES]
)
def test_modality_that_does_not_fit_the_images_is_warned(
    tmp_path, caplog, desc, image, modality, in_channels, expected
):
    path = _write_tif(tmp_path / "images" / "a.tif", image) if image.dtype == np.int16 else None
    item = {
        "image": path or _write(tmp_path / "images" / "a.png", image),
        "label": _write(tmp_path / "masks" / "a.png", _mask()),
    }
    preflight([item], modality=modality, in_channels=in_channels)
    warnings = [r.message for r in caplog.records if r.levelname == "WARNING"]
    if expected is None:
        assert warnings == []
    else:
        assert any(expected in w for w in warnings), warnings
    stats = check_dataset([item]).images
    assert stats.whole_numbers and stats.channels == ((3,) if image.ndim == 3 else (1,))


def _label_map(shape=(32, 40), values=(1, 2, 3)) -> np.ndarray:
    labels = np.zeros(shape, np.uint8)
    for k, value in enumerate(values):
        labels[4 + 8 * k : 10 + 8 * k, 5:35] = value
    return labels


def _coloured(labels: np.ndarray) -> Image.Image:
    """A label map as a palette PNG with a colour per value (as VOC's masks are): its indices are the labels."""
    picture = Image.frombytes("P", labels.shape[::-1], labels.tobytes())
    picture.putpalette([0, 0, 0, 200, 30, 30, 30, 200, 30, 30, 30, 200])
    return picture


THREE = [{"value": 1}, {"value": 2}, {"value": 3}]
LABEL_CASES = [
    # (description, label map, file name, expected fatal substring or None)
    ("good", _label_map(), "a.png", None),
    ("a structure absent", _label_map(values=(1, 3)), "a.png", None),
    ("a value the labels do not name", _label_map(values=(1, 2, 7)), "a.png", "value(s) 7 that the dataset's labels"),
    ("a palette label map, a colour per structure", _coloured(_label_map()), "a.png", None),
    ("a JPEG label map", _label_map(), "a.jpg", "is a JPEG: lossy compression"),
    ("a binary mask of 0/255", _mask(high=255), "a.png", "value(s) 255"),
]


@pytest.mark.parametrize("desc, labels, name, fatal", LABEL_CASES, ids=[c[0] for c in LABEL_CASES])
def test_label_maps_of_several_structures(tmp_path, desc, labels, name, fatal):
    item = {
        "image": _write(tmp_path / "images" / "a.png", _image()),
        "label": _write(tmp_path / "labels" / name, labels),
    }
    report = check_dataset([item], structures=THREE)
    problems = " | ".join(f.problem for f in report.fatal)
    if fatal is None:
        assert not report.fatal, problems
        assert set(report.structure_fractions) == {1, 2, 3}
    else:
        assert (fatal in problems and "values found" in problems) or "JPEG" in problems


def test_the_fingerprint_gives_each_structure_its_share(tmp_path):
    item = {"image": _write(tmp_path / "i.png", _image()), "label": _write(tmp_path / "l.png", _label_map())}
    fingerprint = check_dataset([item], structures=THREE).fingerprint()
    assert fingerprint["structure_fractions"] == {k: pytest.approx(6 * 30 / (32 * 40)) for k in ("1", "2", "3")}


def test_many_warnings_of_one_kind_take_one_line_and_fatal_problems_stay_file_by_file():
    from pipeline.intake.preflight import DatasetReport, Finding

    noisy = [
        Finding(f"masks/f{k}.jpg", f"3-channel mask reduced to one; binarised at {100 + k}", False) for k in range(6)
    ]
    other = [Finding("masks/x.png", "mask is empty (no foreground pixel)", False)]
    fatal = [Finding(f"images/b{k}.png", f"unreadable image: truncated at byte {k}", True) for k in range(5)]
    lines = DatasetReport(num_pairs=12, findings=[*noisy, *other, *fatal]).summary().splitlines()[1:]
    assert [line for line in lines if "[fatal]" in line] == [f"  [fatal] {f.case}: {f.problem}" for f in fatal]
    assert [line for line in lines if "[warning]" in line] == [
        "  [warning] 6 files, e.g. masks/f0.jpg, masks/f1.jpg, masks/f2.jpg: 3-channel mask reduced to one; "
        "binarised at 100 (figures of the first)",
        "  [warning] masks/x.png: mask is empty (no foreground pixel)",
    ]
