"""``report.html`` from synthetic summaries: one table of runs (ok, flagged, failed, interrupted, hostile names, missing
frames), each page parsed and checked for what it must show and for what it must never hold (a network address, a
link to a file that does not exist, an unescaped name); then the frames the scrollers are made of."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.outputs import InferenceWriter, html_report, overlay_frames, write_html_report, write_overlay_frames
from pipeline.outputs.html_report import FRAMES_DIR, frames_path
from pipeline.segments import SegmentDescription, Structure

SERIES = "study_5e6f7a8b/CT_s002_1a2b3c4d"
HOSTILE = '<script>alert("x")</script>'


class _Page(HTMLParser):
    """The tags (with attributes) of a page, its visible text, and the text of its scripts."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.words: list[str] = []
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self._open: str | None = None
        self.feed(text)
        self.close()
        self.text = " ".join(" ".join(self.words).split())

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._open = tag if tag in ("script", "style") else None
        if tag == "script":
            self.scripts.append((dict(attrs), ""))

    def handle_endtag(self, tag: str) -> None:
        self._open = None

    def handle_data(self, data: str) -> None:
        if self._open == "script":
            self.scripts[-1] = (self.scripts[-1][0], self.scripts[-1][1] + data)
        elif self._open is None:
            self.words.append(data)

    def inputs(self) -> dict[str, str]:
        """Each input's card: its name and status."""
        return {a["data-input"]: a["data-status"] for t, a in self.tags if t == "article"}


def _volume(num_slices: int = 4, size: int = 40) -> tuple[np.ndarray, np.ndarray]:
    volume = np.full((num_slices, size, size), -1000.0, np.float32)
    mask = np.zeros(volume.shape, np.uint8)
    for k in range(num_slices):
        volume[k, 8 : 12 + 4 * k, 10:30] = 40.0
        mask[k, 8 : 12 + 4 * k, 10:30] = 1
    return volume, mask


def _series(out: Path, seg: bool = True) -> None:
    """A written series' folder (``seg.dcm`` left out when ``seg`` is false, as for a source without geometry)."""
    folder = out / SERIES
    folder.mkdir(parents=True)
    outputs = (["seg.dcm"] if seg else []) + ["labels.nii.gz", "overlay.png", "report.json"]
    for name in outputs[:-1]:
        (folder / name).write_bytes(b"x")
    report = {
        "outputs": outputs,
        "volume_before_postprocessing_ml": 12.5,
        "structures": [{"label": "Right lung", "volume_ml": 6.0}, {"label": "Left lung", "volume_ml": 5.5}],
    }
    (folder / "report.json").write_text(json.dumps(report))
    write_overlay_frames(*_volume(), frames_path(out, SERIES))


def _image(out: Path, name: str, frames: bool = True) -> dict[str, Any]:
    """A written 2D image: its mask and overlay (and its frame unless ``frames`` is false), and its record."""
    image, mask = _volume(1, 64)
    (out / "images").mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask[0] * 255).save(out / "images" / f"{name}_mask.png")
    Image.fromarray(np.repeat(mask[0, ..., None] * 200, 3, axis=-1)).save(out / "images" / f"{name}_overlay.png")
    if frames:
        write_overlay_frames(image, mask, frames_path(out, f"images/{name}"))
    outputs = [f"images/{name}_mask.png", f"images/{name}_overlay.png"]
    return {"input": name, "kind": "image", "status": "ok", "area_px": 80, "fraction": 0.0195, "outputs": outputs}


def _summary(inputs: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    statuses = [r["status"] for r in inputs]
    return {
        "model": {"name": "unet", "version": "0.1.0", "weights": "model.pt", "flip_tta": False},
        "interrupted": False,
        "inputs": inputs,
        "not_selected": [{"input": "CT_s001_99aa00bb", "reason": "ImageType contains LOCALIZER"}],
        "skipped_files": [{"file": "README.txt", "reason": "not an image or DICOM file"}],
        "num_ok": statuses.count("ok"),
        "num_flagged": statuses.count("flagged"),
        "num_failed": statuses.count("failed"),
        "num_not_run": 0,
        "wall_time_s": 3.2,
        **extra,
    }


def _series_record(status: str = "ok", **extra: Any) -> dict[str, Any]:
    record = {"input": SERIES.split("/")[1], "kind": "dicom series", "status": status, "num_slices": 4}
    return {**record, "segmented_volume_ml": 11.5, "warnings": [], **extra}


def ok_run(out: Path) -> dict[str, Any]:
    _series(out)
    return _summary([_series_record(), _image(out, "case_0002")])


def flagged_series(out: Path) -> dict[str, Any]:
    _series(out, seg=False)
    warning = "no DICOM SEG: the source series cannot be referenced (no FrameOfReferenceUID)"
    flags = ["the foreground covers 91 % of slice 3, more than any training mask"]
    return _summary([_series_record("flagged", flags=flags, warnings=[warning])])


def failed_inputs(out: Path) -> dict[str, Any]:
    failed = {"input": "broken", "kind": "image", "status": "failed", "error": "broken.png: not a readable image"}
    series = {"input": "CT_s004_0badf00d", "kind": "dicom series", "status": "failed", "error": "slice 3: no pixels"}
    return _summary([series, _image(out, "case_0004"), failed])


def interrupted_run(out: Path) -> dict[str, Any]:
    return _summary([_image(out, "case_0008")], interrupted=True, num_not_run=1995)


def hostile_names(out: Path) -> dict[str, Any]:
    failed = {"input": HOSTILE, "kind": "image", "status": "failed", "error": f"{HOSTILE}.png: <img src=x onerror=1>"}
    return _summary([_image(out, "a & b #1"), failed])


def frames_missing(out: Path) -> dict[str, Any]:
    """An older run's outputs, without frames: each picture is its overlay.png scaled down."""
    folder = out / "volumes" / "ct_volume"
    folder.mkdir(parents=True)
    Image.fromarray(np.zeros((600, 300, 3), np.uint8)).save(folder / "overlay.png")
    (folder / "report.json").write_text(json.dumps({"outputs": ["labels.nii.gz", "overlay.png", "report.json"]}))
    volume = {"input": "ct_volume", "kind": "nifti volume", "status": "ok", "num_slices": 3, "segmented_volume_ml": 2.0}
    return _summary([volume, _image(out, "case_0015", frames=False)])


RUNS: list[tuple[Callable[[Path], dict[str, Any]], dict[str, str], list[str], int]] = [
    # summary, inputs shown with their status, words the page must show, scrollers
    (ok_run, {"CT_s002_1a2b3c4d": "ok", "case_0002": "ok"},
     ["2 inputs: 2 ok, 0 flagged, 0 failed", "study_5e6f7a8b", "11.5 mL", "12.5 mL", "Right lung", "6.0 mL",
      "80 px", "1.95 %", "CT_s001_99aa00bb", "ImageType contains LOCALIZER", "README.txt"], 1),
    (flagged_series, {"CT_s002_1a2b3c4d": "flagged"},
     ["flagged: the foreground covers 91 % of slice 3", "warning: no DICOM SEG"], 1),
    (failed_inputs, {"CT_s004_0badf00d": "failed", "case_0004": "ok", "broken": "failed"},
     ["2 inputs failed", "failed: broken.png: not a readable image", "failed: slice 3: no pixels",
      "series not written"], 0),
    (interrupted_run, {"case_0008": "ok"}, ["The run was interrupted", "1995 inputs were not run"], 0),
    (hostile_names, {"a & b #1": "ok", HOSTILE: "failed"}, [HOSTILE, "<img src=x onerror=1>"], 0),
    (frames_missing, {"ct_volume": "ok", "case_0015": "ok"}, ["NIfTI volumes", "3 slices", "2.0 mL"], 0),
]  # fmt: skip


@pytest.mark.parametrize("make, shown, words, scrollers", RUNS, ids=[run[0].__name__ for run in RUNS])
def test_report_html(tmp_path, make, shown, words, scrollers):
    out = tmp_path / "out"
    out.mkdir()
    summary = make(out)
    path = write_html_report(summary, out)

    assert path == out / "report.html"
    text = path.read_text(encoding="utf-8")
    page = _Page(text)
    assert page.inputs() == shown
    for words_shown in words:
        assert words_shown in page.text, words_shown
    # escaped: the hostile name is text, never a tag
    assert "<script>alert" not in text and "<img src=x" not in text
    assert [t for t, _ in page.tags if t == "script"] == ["script"] * (scrollers + 1)
    # self-contained: nothing is loaded from anywhere, and the policy forbids it
    for tag, attributes in page.tags:
        if "src" in attributes or tag == "link":
            assert (attributes.get("src") or attributes.get("href") or "").startswith("data:"), tag
    assert "http://" not in text and "https://" not in text
    policy = next(a["content"] for t, a in page.tags if t == "meta" and a.get("http-equiv"))
    assert "default-src 'none'" in policy
    # every link is relative and leads to a file of the run
    links = [a["href"] for t, a in page.tags if t == "a"]
    assert links, "no file linked"
    for link in links:
        assert not link.startswith(("/", "file:")) and ":" not in link.split("/")[0], link
        assert (out / unquote(link)).is_file(), link
    # every picture is a JPEG that decodes
    pictures = [a["src"] for t, a in page.tags if t == "img"]
    assert len(pictures) == sum(1 for r in summary["inputs"] if r["status"] != "failed")
    for uri in pictures:
        assert uri.startswith("data:image/jpeg;base64,")
        Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).verify()
    assert not (out / FRAMES_DIR).exists()  # the frames are in the page now
    assert not list(out.glob(".tmp-*"))


def test_only_files_that_exist_are_linked(tmp_path):
    """A series without seg.dcm (its source could not be referenced) links the other three files only."""
    out = tmp_path / "out"
    out.mkdir()
    write_html_report(flagged_series(out), out)
    links = {unquote(a["href"]) for t, a in _Page((out / "report.html").read_text()).tags if t == "a"}
    assert links == {f"{SERIES}/{name}" for name in ("labels.nii.gz", "overlay.png", "report.json")}


def test_a_scroller_holds_every_slice_in_order(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    write_html_report(ok_run(out), out)
    page = _Page((out / "report.html").read_text())
    ((_, data),) = [(a, text) for a, text in page.scripts if a.get("class") == "frames"]
    frames = json.loads(data)
    assert [k for k, _ in frames] == [0, 1, 2, 3]
    slider = next(a for t, a in page.tags if t == "input" and a.get("type") == "range")
    assert (slider["min"], slider["max"], slider["value"]) == ("0", "3", "3")  # starts on the most foreground
    shown = next(a for t, a in page.tags if t == "img" and a["data-slice"] == "3")
    assert shown["src"] == frames[3][1]


def test_a_run_of_many_inputs_embeds_the_first_pictures_and_links_the_rest(tmp_path, monkeypatch):
    monkeypatch.setattr(html_report, "MAX_PICTURES", 2)
    images = [_image(tmp_path, f"case_{i:04d}") for i in range(3)]
    write_html_report(_summary(images), tmp_path)
    page = _Page((tmp_path / "report.html").read_text())
    assert page.inputs() == {"case_0000": "ok", "case_0001": "ok", "case_0002": "ok"}
    assert sum(t == "img" for t, _ in page.tags) == 2 and "The pictures of 1 input are not embedded" in page.text
    links = {unquote(a["href"]) for t, a in page.tags if t == "a"}
    assert "images/case_0002_overlay.png" in links  # the third still links its overlay


def test_the_page_embeds_pictures_up_to_its_byte_budget(tmp_path, monkeypatch):
    images = [_image(tmp_path, f"case_{i:04d}") for i in range(3)]
    one = len((tmp_path / FRAMES_DIR / "images" / "case_0000.json").read_text())
    monkeypatch.setattr(html_report, "MAX_PAGE_BYTES", 2 * one)  # room for about two pictures, not three
    write_html_report(_summary(images), tmp_path)
    page = _Page((tmp_path / "report.html").read_text())
    assert 1 <= sum(t == "img" for t, _ in page.tags) < 3 and "are not embedded" in page.text


def test_the_writer_draws_the_pictures_of_the_first_inputs_only(tmp_path, monkeypatch):
    monkeypatch.setattr(html_report, "MAX_PICTURES", 1)
    writer = InferenceWriter(tmp_path, SegmentDescription())
    image, mask = _volume(1, 64)
    for name in ("a", "b"):
        writer.write_image(name, torch.from_numpy(image.astype(np.float32)), torch.from_numpy(mask.astype(np.float32)))
    assert [p.name for p in (tmp_path / FRAMES_DIR).rglob("*.json")] == ["a.json"]


def test_a_picture_that_cannot_be_written_leaves_the_input_as_it_was(tmp_path, caplog):
    """The page is a view of the outputs: a failure to draw it (here a file where its folder should be) is logged,
    and the input keeps its files and its record."""
    (tmp_path / FRAMES_DIR).write_text("not a folder")
    writer = InferenceWriter(tmp_path, SegmentDescription())
    image, mask = _volume(1, 64)
    record = writer.write_image(
        "a", torch.from_numpy(image.astype(np.float32)), torch.from_numpy(mask.astype(np.float32))
    )
    assert record["outputs"] == ["images/a_mask.png", "images/a_overlay.png"] and record["area_px"] > 0
    assert "a: no picture for report.html" in caplog.text
    writer.write_summary(_summary([{**record, "input": "a", "kind": "image", "status": "ok"}]))
    assert _Page((tmp_path / "report.html").read_text()).inputs() == {"a": "ok"}  # its overlay.png, scaled down


def test_two_runs_sharing_an_output_folder_keep_their_own_pictures(tmp_path):
    first, second = InferenceWriter(tmp_path, SegmentDescription()), InferenceWriter(tmp_path, SegmentDescription())
    image, mask = _volume(1, 64)
    for writer, name in ((first, "a"), (second, "b")):
        writer.write_image(name, torch.from_numpy(image.astype(np.float32)), torch.from_numpy(mask.astype(np.float32)))
    first.write_summary(_summary([_image(tmp_path, "a", frames=False)]))
    assert not (tmp_path / FRAMES_DIR / first.report_run).exists()
    assert (tmp_path / FRAMES_DIR / second.report_run / "images" / "b.json").is_file()  # the other run's, kept
    second.write_summary(_summary([_image(tmp_path, "b", frames=False)]))
    assert not (tmp_path / FRAMES_DIR).exists()  # the last to finish removes the folder


def test_the_writer_writes_the_page_with_the_summary(tmp_path):
    writer = InferenceWriter(tmp_path, SegmentDescription())
    writer.write_summary(_summary([_image(tmp_path, "case_0020")]))
    assert (tmp_path / "summary.json").is_file()
    assert _Page((tmp_path / "report.html").read_text()).inputs() == {"case_0020": "ok"}


FRAMES = [
    # volume shape, max_side, max_frames, expected frames, expected (width, height)
    ((4, 40, 40), 256, 300, 4, (40, 40)),
    ((3, 600, 300), 256, 300, 3, (128, 256)),
    ((40, 512, 256), 256, 10, 10, (128, 256)),
    ((1, 700, 1400), 512, 300, 1, (512, 256)),
]


@pytest.mark.parametrize("shape, max_side, max_frames, count, size", FRAMES)
def test_overlay_frames(shape, max_side, max_frames, count, size):
    volume = np.full(shape, -1000.0, np.float32)
    mask = np.zeros(shape, np.uint8)
    middle, spread = shape[0] // 2, shape[0] // 8
    mask[middle - spread : middle + spread + 1, shape[1] // 4 : shape[1] // 2, shape[2] // 4 : shape[2] // 2] = 1
    mask[middle, shape[1] // 4 : shape[1] // 2 + 4, shape[2] // 4 : shape[2] // 2 + 4] = 1  # the most foreground
    volume[mask == 1] = 40.0
    frames = overlay_frames(volume, mask, max_side=max_side, max_frames=max_frames)

    assert frames["num_slices"] == shape[0] and len(frames["frames"]) == count
    assert tuple(frames["size"]) == size
    indices = [k for k, _ in frames["frames"]]
    assert indices[0] == 0 and indices[-1] == shape[0] - 1 and indices == sorted(set(indices))
    start_slice, uri = frames["frames"][frames["start"]]
    assert middle - spread <= start_slice <= middle + spread  # a frame with foreground, the most there is
    assert count < shape[0] or start_slice == middle
    with Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))) as picture:
        rgb = np.asarray(picture.convert("RGB")).astype(int)
    assert picture.size == size
    red = (rgb[..., 0] > 180) & (rgb[..., 1] < 90) & (rgb[..., 2] < 90)
    assert red.sum() > 0.5 * 2 * (size[0] // 4 + size[1] // 4)  # the outline survives shrinking and JPEG


def test_overlay_frames_outline_each_structure_in_its_colour():
    volume, mask = _volume(1, 64)
    mask[0, 40:60, 10:30] = 2
    structures = [Structure(label="A", value=1, color=(0, 0, 255)), Structure(label="B", value=2, color=(0, 255, 0))]
    frames = overlay_frames(volume, mask, structures=structures)
    uri = frames["frames"][0][1]
    rgb = np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGB")).astype(int)
    blue = (rgb[..., 2] > 180) & (rgb[..., 0] < 90) & (rgb[..., 1] < 90)
    green = (rgb[..., 1] > 180) & (rgb[..., 0] < 90) & (rgb[..., 2] < 90)
    assert blue[:20].sum() > 20 and green[40:].sum() > 20 and not green[:20].any()


@pytest.mark.parametrize(
    "volume, mask, kwargs, message",
    [
        (np.zeros((8, 8)), np.zeros((8, 8)), {}, "must both be"),
        (np.zeros((2, 8, 8)), np.zeros((3, 8, 8)), {}, "must both be"),
        (np.zeros((2, 8, 8)), np.zeros((2, 8, 8)), {"max_side": 8}, "max_side must be >= 16"),
        (np.zeros((2, 8, 8)), np.zeros((2, 8, 8)), {"max_frames": 0}, "max_frames >= 1"),
    ],
)
def test_overlay_frames_refuses(volume, mask, kwargs, message):
    with pytest.raises(ValueError, match=message):
        overlay_frames(volume, mask, **kwargs)
