"""Overlay pictures: windowing, outline colours and positions, montage layout, PNG files; several structures in their
colours with a legend, label-map PNGs."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pipeline.outputs import (
    display_window,
    montage,
    overlay_outline,
    to_uint8,
    write_label_png,
    write_mask_png,
    write_overlay_montage,
    write_overlay_png,
    write_side_by_side,
)
from pipeline.segments import Structure, structures_from_labels

RED, GREEN = (255, 0, 0), (0, 255, 0)

# 0..100: the 1st/99th percentiles are 1 and 99, so v maps to (v - 1) * 255 / 98, clipped
_RAMP_EXPECTED = np.rint(np.clip(np.arange(101) - 1, 0, 98) * 255 / 98)[None]
TO_UINT8_CASES = [
    # (name, image, window, expected)
    ("window", np.array([[-1000.0, -600.0], [-200.0, 400.0]]), (-1000, -200), np.array([[0, 128], [255, 255]])),
    ("window_clips_below", np.array([[-2000.0, 0.0]]), (-1000, 0), np.array([[0, 255]])),
    ("percentile", np.arange(101, dtype=float).reshape(1, 101), None, _RAMP_EXPECTED),
    ("constant", np.full((2, 2), 7.0), None, np.zeros((2, 2))),
    ("nan_is_black", np.array([[np.nan, 0.0, 10.0]]), (0, 10), np.array([[0, 0, 255]])),
    ("all_nan", np.full((2, 2), np.nan), None, np.zeros((2, 2))),
    ("infinities_clip", np.array([[-np.inf, np.inf, 5.0]], np.float32), (0, 10), np.array([[0, 255, 128]])),
    ("integer_input", np.array([[0, 50, 100]], np.int16), (0, 100), np.array([[0, 128, 255]])),
]


@pytest.mark.parametrize(("name", "image", "window", "expected"), TO_UINT8_CASES, ids=[c[0] for c in TO_UINT8_CASES])
def test_to_uint8(name, image, window, expected):
    out = to_uint8(image, window)
    assert out.dtype == np.uint8 and out.shape == image.shape
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize(
    ("image", "window", "message"),
    [(np.zeros((2, 2, 2)), None, "2D"), (np.zeros((2, 2)), (5, 5), "high > low"), (np.zeros((2, 2)), (5, 1), "high")],
)
def test_to_uint8_bad_input(image, window, message):
    with pytest.raises(ValueError, match=message):
        to_uint8(image, window)


def _square_mask(size: int, lo: int, hi: int) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    mask[lo:hi, lo:hi] = 1
    return mask


def test_overlay_outline_colours_and_positions():
    image = np.full((16, 16), 100.0)
    image[0, 0] = 0.0  # so the percentile window is not degenerate: background is 255 grey
    mask, second = _square_mask(16, 4, 10), _square_mask(16, 6, 12)
    rgb = overlay_outline(image, mask, window=(0, 100), second_mask=second, color=(255, 0, 0), second_color=GREEN)
    assert rgb.shape == (16, 16, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[4, 4]) == RED  # corner of the first square's 1-pixel inner boundary
    assert tuple(rgb[11, 11]) == GREEN  # corner of the second
    assert tuple(rgb[6, 9]) == GREEN  # where the outlines cross, the second is drawn over the first
    assert tuple(rgb[7, 7]) == (255, 255, 255)  # inside both: image grey, untouched
    assert tuple(rgb[0, 0]) == (0, 0, 0)
    outline = np.all(rgb == RED, axis=-1)
    assert outline.sum() == 20 - 2  # 6x6 square ring = 20 pixels, the 2 crossings overdrawn green
    assert not (outline & (mask == 0)).any()  # inner boundary: never outside the mask


def _masks_for_outline() -> list[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(3)
    ring = _square_mask(12, 2, 10)
    ring[5:7, 5:7] = 0
    edge = np.zeros((9, 7), bool)
    edge[0, :], edge[:, -1] = True, True
    return [
        ("empty", np.zeros((6, 6), bool)),
        ("full", np.ones((6, 6), bool)),
        ("one_pixel", np.pad(np.ones((1, 1), bool), 3)),
        ("square_with_hole", ring.astype(bool)),
        ("touching_edges", edge),
        ("one_row", np.array([[0, 1, 1, 0, 1]], bool)),
        *[(f"random_{i}", rng.random((15, 11)) < p) for i, p in enumerate((0.2, 0.5, 0.8))],
    ]


@pytest.mark.parametrize(("name", "mask"), _masks_for_outline(), ids=[c[0] for c in _masks_for_outline()])
def test_outline_is_scikit_image_inner_boundary(name, mask):
    from skimage.segmentation import find_boundaries

    rgb = overlay_outline(np.zeros(mask.shape), mask, window=(0, 1), color=RED)
    np.testing.assert_array_equal(np.all(rgb == RED, axis=-1), find_boundaries(mask, mode="inner"))


def test_overlay_outline_without_mask_is_grey():
    image = np.random.default_rng(0).normal(size=(8, 8))
    rgb = overlay_outline(image, np.zeros((8, 8)))
    np.testing.assert_array_equal(rgb, np.repeat(to_uint8(image)[..., None], 3, axis=-1))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mask2d": np.zeros((8, 9))}, "does not match"),
        ({"second_mask": np.zeros((9, 8))}, "does not match"),
        ({"color": (300, 0, 0)}, "color"),
        ({"color": (1, 2)}, "color"),
    ],
)
def test_overlay_outline_bad_input(kwargs, message):
    args = {"image2d": np.zeros((8, 8)), "mask2d": np.zeros((8, 8)), **kwargs}
    with pytest.raises(ValueError, match=message):
        overlay_outline(args.pop("image2d"), args.pop("mask2d"), **args)


MONTAGE_CASES = [
    # (n tiles, columns, expected shape for 4x6 tiles)
    (1, None, (4, 6, 3)),
    (4, None, (8, 12, 3)),
    (5, None, (8, 18, 3)),
    (5, 5, (4, 30, 3)),
    (5, 2, (12, 12, 3)),
    (3, 1, (12, 6, 3)),
]


@pytest.mark.parametrize(("n", "columns", "shape"), MONTAGE_CASES)
def test_montage_layout(n, columns, shape):
    tiles = [np.full((4, 6, 3), i + 1, np.uint8) for i in range(n)]
    out = montage(tiles, columns)
    assert out.shape == shape and out.dtype == np.uint8
    cols = shape[1] // 6
    for i in range(n):
        r, c = divmod(i, cols)
        assert (out[r * 4 : (r + 1) * 4, c * 6 : (c + 1) * 6] == i + 1).all()
    assert (out == 0).sum() == out.size - n * 4 * 6 * 3  # empty cells black


@pytest.mark.parametrize(
    ("tiles", "columns", "message"),
    [
        ([], None, "at least one"),
        ([np.zeros((4, 4, 3)), np.zeros((4, 5, 3))], None, "tile 1"),
        ([np.zeros((4, 4))], None, r"\(H, W, 3\)"),
        ([np.zeros((4, 4, 3))], 0, "columns"),
    ],
)
def test_montage_bad_input(tiles, columns, message):
    with pytest.raises(ValueError, match=message):
        montage(tiles, columns)


MONTAGE_FILE_CASES = [
    # (name, mask slices with foreground, max_tiles, tile_size, expected png shape)
    ("all_slices", [1, 2, 3, 4], 16, 32, (64, 64, 3)),  # 4 tiles on a 2 x 2 grid
    ("limited", list(range(10)), 4, 32, (64, 64, 3)),
    ("one_slice", [5], 16, 48, (48, 48, 3)),
    ("empty_mask_spreads_over_volume", [], 3, 32, (64, 64, 3)),
]


@pytest.mark.parametrize(
    ("name", "occupied", "max_tiles", "tile_size", "shape"),
    MONTAGE_FILE_CASES,
    ids=[c[0] for c in MONTAGE_FILE_CASES],
)
def test_write_overlay_montage(tmp_path, name, occupied, max_tiles, tile_size, shape):
    volume = np.random.default_rng(1).normal(size=(10, 24, 40)).astype(np.float32)
    mask = np.zeros(volume.shape, np.uint8)
    for k in occupied:
        mask[k, 6:18, 10:30] = 1
    path = write_overlay_montage(
        volume, mask, tmp_path / "sub" / f"{name}.png", max_tiles=max_tiles, tile_size=tile_size
    )
    with Image.open(path) as image:
        assert image.format == "PNG" and image.mode == "P"  # greys, the red outline and the yellow label only
        rgb = np.asarray(image.convert("RGB"))
    assert rgb.shape == shape
    assert np.all(rgb == RED, axis=-1).any() == bool(occupied)
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_montage_tiles_keep_aspect_and_label_slices(tmp_path):
    volume = np.zeros((3, 20, 40), np.float32)
    mask = np.zeros(volume.shape, np.uint8)
    mask[:, 5:15, 10:30] = 1
    path = write_overlay_montage(volume, mask, tmp_path / "m.png", tile_size=64, window=(0, 1))
    rgb = np.asarray(Image.open(path).convert("RGB"))
    assert rgb.shape == (128, 128, 3)  # 3 tiles on a 2 x 2 grid
    tile = rgb[:64, :64]
    assert not tile[48:].any()  # 40x20 image fitted to 64x32, centred: black bands of 16 rows
    red = np.argwhere(np.all(tile == RED, axis=-1))
    assert red[:, 0].min() == 16 + 8 and red[:, 0].max() == 16 + 23  # mask rows 5..14 scaled x1.6 -> 8..23
    assert red[:, 1].min() == 16 and red[:, 1].max() == 47  # mask columns 10..29 -> 16..47
    assert np.all(tile[:16] == (255, 255, 0), axis=-1).any()  # the yellow label


PALETTE_CASES = [
    # (name, picture, indexed): greys with the outline and label colours become a palette PNG; anything else RGB
    ("grey_ramp", np.repeat(np.arange(256, dtype=np.uint8).reshape(16, 16, 1), 3, axis=2), True),
    ("greys_red_green_yellow", np.array([[[9, 9, 9], [255, 0, 0], [0, 255, 0], [255, 255, 0]]], np.uint8), True),
    ("another_colour", np.array([[[9, 9, 9], [255, 0, 0], [0, 0, 255]]], np.uint8), False),
    ("blended_red", np.array([[[128, 64, 64], [255, 0, 0]]], np.uint8), False),
]


@pytest.mark.parametrize(("name", "picture", "indexed"), PALETTE_CASES, ids=[c[0] for c in PALETTE_CASES])
def test_overlay_png_is_indexed_only_when_nothing_is_lost(tmp_path, name, picture, indexed):
    from pipeline.outputs.overlay import _save_png

    with Image.open(_save_png(picture, tmp_path / f"{name}.png", indexed=True)) as image:
        assert image.mode == ("P" if indexed else "RGB")
        rgb = np.asarray(image.convert("RGB")).astype(int)
    grey = np.all(picture == picture[..., :1], axis=-1)
    assert np.abs(rgb - picture)[grey].max(initial=0) <= 1  # greys within one level of 256
    np.testing.assert_array_equal(rgb[~grey], picture[~grey])  # colours exact


def test_write_overlay_montage_bad_input(tmp_path):
    with pytest.raises(ValueError, match="one shape"):
        write_overlay_montage(np.zeros((2, 8, 8)), np.zeros((2, 8, 9)), tmp_path / "m.png")
    with pytest.raises(ValueError, match="max_tiles"):
        write_overlay_montage(np.zeros((2, 8, 8)), np.zeros((2, 8, 8)), tmp_path / "m.png", max_tiles=0)


@pytest.mark.parametrize(
    ("mask", "expected"),
    [
        (np.array([[0, 1], [1, 0]], np.uint8), [[0, 255], [255, 0]]),
        (np.array([[False, True]]), [[0, 255]]),
        (np.array([[0.0, 2.0]]), [[0, 255]]),
    ],
)
def test_write_mask_png(tmp_path, mask, expected):
    with Image.open(write_mask_png(mask, tmp_path / "mask.png")) as image:
        assert image.mode == "L"
        np.testing.assert_array_equal(np.asarray(image), expected)


def _case(name: str, shape: tuple[int, int], shift: int) -> dict:
    label = np.zeros(shape, np.uint8)
    label[4:12, 4:12] = 1
    pred = np.roll(label, shift, axis=1)
    return {"name": name, "image": np.random.default_rng(0).normal(size=shape), "label": label, "pred": pred}


def test_write_side_by_side(tmp_path):
    cases = [_case("perfect", (16, 16), 0), _case("shifted", (24, 16), 4), {**_case("given", (16, 32), 2), "dice": 0.5}]
    path = write_side_by_side(cases, tmp_path / "cases.png", tile_size=64)
    rgb = np.asarray(Image.open(path))
    band = (rgb.shape[0] - 3 * 64) // 4  # title band + one caption band per row
    assert band > 8 and rgb.shape == (4 * band + 3 * 64, 3 * 64, 3)
    for r in range(3):
        top = band + r * (band + 64) + band
        image_tile, label_tile, pred_tile = (rgb[top : top + 64, c * 64 : (c + 1) * 64] for c in range(3))
        assert not np.all(image_tile == RED, axis=-1).any() and not np.all(image_tile == GREEN, axis=-1).any()
        assert np.all(label_tile == GREEN, axis=-1).any() and not np.all(label_tile == RED, axis=-1).any()
        assert np.all(pred_tile == RED, axis=-1).any()


def test_write_side_by_side_outlines_each_structure_in_its_colour(tmp_path):
    structures = structures_from_labels({"1": "right lung", "2": "left lung", "3": "heart"})
    label = np.zeros((32, 32), np.uint8)
    label[4:28, 2:12], label[4:28, 20:30], label[14:24, 12:20] = 1, 2, 3
    pred = label.copy()
    pred[14:24, 12:20] = 0  # the heart missed
    path = write_side_by_side(
        [{"name": "c", "image": np.zeros((32, 32)), "label": label, "pred": pred}], tmp_path / "cases.png",
        tile_size=64, structures=structures,
    )  # fmt: skip
    rgb = np.asarray(Image.open(path).convert("RGB"))
    band = rgb.shape[0] - 64  # title, caption and the legend below
    assert rgb.shape[1] == 3 * 64 and band > 16
    label_tile, pred_tile = (rgb[:, c * 64 : (c + 1) * 64] for c in (1, 2))
    for structure in structures:
        color = np.array(structure.color, np.uint8)
        assert np.all(label_tile == color, axis=-1).any(), structure.label
    heart = np.array(structures[2].color, np.uint8)
    legend = rgb[-band // 3 :]
    assert np.all(legend == heart, axis=-1).any()  # the legend's swatch
    lungs_only = pred_tile[: 64 + band - band // 3]
    assert not np.all(lungs_only == heart, axis=-1).any() and not np.all(pred_tile == RED, axis=-1).any()


@pytest.mark.parametrize(
    ("cases", "message"),
    [
        ([], "at least one"),
        ([{"name": "a", "image": np.zeros((4, 4)), "label": np.zeros((4, 4))}], r"lacks \['pred'\]"),
        ([{"name": "b", "image": np.zeros((4, 4)), "label": np.zeros((4, 4)), "pred": np.zeros((4, 5))}], "'b'"),
    ],
)
def test_write_side_by_side_bad_input(tmp_path, cases, message):
    with pytest.raises(ValueError, match=message):
        write_side_by_side(cases, tmp_path / "x.png")


@pytest.mark.parametrize(
    "modality, window, expected",
    [("CT", [-1000, 400], (-1000.0, 400.0)), ("MR", [-1000, 400], None), ("ES", [0, 1], None)],
)
def test_display_window_is_the_ct_window_for_ct_only(modality, window, expected):
    assert display_window(modality, window) == expected


# ---------------------------------------------------------------------------------------------- several structures
def _chambers() -> tuple[np.ndarray, list[Structure]]:
    """(40, 48) label map of a cardiac short axis: RV cavity (1) beside the myocardium ring (2) around the LV cavity
    (3); the ring and the cavity touch, so their outlines lie side by side."""
    yy, xx = np.mgrid[:40, :48]
    labels = np.zeros((40, 48), np.uint8)
    radius = np.hypot(yy - 20, xx - 30)
    labels[radius < 12] = 2
    labels[radius < 7] = 3
    labels[(np.hypot(yy - 20, xx - 10) < 8) & (labels == 0)] = 1
    structures = structures_from_labels(
        {"1": "right ventricle cavity", "2": "myocardium", "3": "left ventricle cavity"}
    )
    return labels, structures


def _colour_pixels(rgb: np.ndarray, color) -> np.ndarray:
    return np.all(rgb == np.asarray(color, np.uint8), axis=-1)


def test_overlay_outline_of_structures_in_their_colours():
    from skimage.segmentation import find_boundaries

    labels, structures = _chambers()
    rgb = overlay_outline(np.zeros(labels.shape), labels, window=(0, 1), structures=structures[::-1])
    assert len({s.color for s in structures}) == 3
    for s in structures:
        np.testing.assert_array_equal(_colour_pixels(rgb, s.color), find_boundaries(labels == s.value, mode="inner"))
    assert not _colour_pixels(rgb, RED).any()


def _legend_band(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    band = rgb[height:]
    assert band.shape[0] > 8 and not rgb[:height, width:].any()  # below the picture; black beside a narrow one
    return band


@pytest.mark.parametrize("shape", [(40, 48), (24, 20)], ids=["wide_enough", "narrower_than_the_legend"])
def test_write_overlay_png_with_structures_has_outlines_and_legend(tmp_path, shape):
    labels, structures = _chambers()
    labels = np.asarray(Image.fromarray(labels).resize(shape[::-1], Image.Resampling.NEAREST))
    image = np.random.default_rng(0).normal(size=shape)
    path = write_overlay_png(image, labels, tmp_path / "o.png", structures=structures)
    with Image.open(path) as picture:
        assert picture.mode == "P"  # greys, the structures' colours and the legend only
        rgb = np.asarray(picture.convert("RGB"))
    height, width = shape
    assert rgb.shape[0] > height and rgb.shape[1] >= width
    expected = overlay_outline(image, labels, structures=structures)
    top = rgb[:height, :width].astype(int)
    coloured = ~np.all(expected == expected[..., :1], axis=-1)
    np.testing.assert_array_equal(top[coloured], expected[coloured])  # outlines exact
    assert np.abs(top - expected)[~coloured].max() <= 1  # greys within one level
    band = _legend_band(rgb, height, width)
    side = int(np.sqrt(_colour_pixels(band, structures[0].color).sum()))
    assert side >= 8
    for s in structures:  # a filled square swatch for each structure
        assert _colour_pixels(band, s.color).sum() == side * side
    assert (band.max(axis=-1) > 200).sum() > 3 * side * side  # white labels beside them


def test_write_overlay_png_binary_is_the_red_outline_at_image_size(tmp_path):
    labels, _ = _chambers()
    mask = labels > 0
    image = np.random.default_rng(0).normal(size=mask.shape)
    with Image.open(write_overlay_png(image, mask, tmp_path / "o.png")) as picture:
        assert picture.mode == "P"
        rgb = np.asarray(picture.convert("RGB"))
    assert rgb.shape == (*mask.shape, 3)
    np.testing.assert_array_equal(_colour_pixels(rgb, RED), _colour_pixels(overlay_outline(image, mask), RED))


def test_write_overlay_montage_with_structures(tmp_path):
    labels, structures = _chambers()
    volume = np.random.default_rng(1).normal(size=(5, *labels.shape)).astype(np.float32)
    label_map = np.stack([labels if k in (1, 2, 3) else 0 * labels for k in range(5)])
    path = write_overlay_montage(volume, label_map, tmp_path / "m.png", tile_size=64, structures=structures)
    with Image.open(path) as picture:
        assert picture.mode == "P"
        rgb = np.asarray(picture.convert("RGB"))
    tiles = rgb[:128]  # 3 slices with foreground on a 2 x 2 grid of 64-pixel tiles
    assert rgb.shape[1] == 128 and rgb.shape[0] > 128
    for s in structures:
        assert _colour_pixels(tiles, s.color).any()
        assert _colour_pixels(_legend_band(rgb, 128, 128), s.color).sum() >= 64
    assert not _colour_pixels(rgb, RED).any()
    assert _colour_pixels(tiles[:16], (255, 255, 0)).any()  # the slice labels as before


@pytest.mark.parametrize(
    ("structures", "message"),
    [([], "non-empty"), ([{"value": 1, "label": "a"}, {"value": 1, "label": "b"}], "share a label value")],
    ids=["empty", "repeated_value"],
)
def test_bad_structures(tmp_path, structures, message):
    with pytest.raises(ValueError, match=message):
        overlay_outline(np.zeros((8, 8)), np.zeros((8, 8)), structures=structures)
    with pytest.raises(ValueError, match=message):
        write_overlay_montage(np.zeros((2, 8, 8)), np.zeros((2, 8, 8)), tmp_path / "m.png", structures=structures)


@pytest.mark.parametrize("count", [3, 10, 64, 65], ids=lambda n: f"{n}_colours")
def test_palette_of_many_colours_keeps_greys_within_a_level(tmp_path, count):
    from pipeline.outputs.overlay import _save_png

    colors = tuple((255 - i, i, 7) for i in range(count))
    picture = np.repeat(np.arange(256, dtype=np.uint8).reshape(16, 16, 1), 3, axis=2)
    shown = np.array([colors[0], colors[count // 2], colors[-1]], np.uint8)
    picture[0, :3] = shown
    with Image.open(_save_png(picture, tmp_path / "p.png", indexed=True, colors=colors)) as image:
        assert image.mode == ("P" if count <= 64 else "RGB")
        rgb = np.asarray(image.convert("RGB")).astype(int)
    np.testing.assert_array_equal(rgb[0, :3], shown)
    assert np.abs(rgb - picture)[1:].max() <= 1


LABEL_PNG_CASES = [
    # (name, label map): the values are written as they are
    ("uint8", np.array([[0, 1, 2], [3, 255, 0]], np.uint8)),
    ("int64", np.array([[0, 7, 200]], np.int64)),
    ("float_whole", np.array([[0.0, 2.0, 3.0]], np.float32)),
    ("bool", np.array([[False, True]])),
]


@pytest.mark.parametrize(("name", "labels"), LABEL_PNG_CASES, ids=[c[0] for c in LABEL_PNG_CASES])
def test_write_label_png(tmp_path, name, labels):
    with Image.open(write_label_png(labels, tmp_path / f"{name}.png")) as image:
        assert image.mode == "L"
        np.testing.assert_array_equal(np.asarray(image), labels.astype(np.uint8))


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (np.array([[0, 300]]), "0-255"),
        (np.array([[-1, 0]]), "0-255"),
        (np.array([[0.0, 1.5]]), "whole numbers"),
        (np.array([[0.0, np.nan]]), "whole numbers"),
        (np.zeros((2, 2, 2), np.uint8), "2D"),
    ],
)
def test_write_label_png_bad_input(tmp_path, labels, message):
    with pytest.raises(ValueError, match=message):
        write_label_png(labels, tmp_path / "labels.png")
    assert not list(tmp_path.iterdir())
