"""``report.html``: one self-contained page to look at an inference run.

The page shows every input of ``summary.json`` in its order within three groups (DICOM studies with their series,
NIfTI volumes, 2D images): its overlay, its status with the reasons (flags, the error of a failed input, a series'
warnings), its structures' areas (2D) or volumes (series and volumes), and links to its files that exist. A series or
volume shows its slices one at a time under a slider (the slice scroller). The series not selected and the files
skipped follow, with their reasons.

Self-contained: pictures are embedded as ``data:`` URIs, the style sheet and the scroller's few lines of script are
inline, links are relative to the output folder, and a Content-Security-Policy forbids the page to load anything
else, so it opens from a disk, an archive or a mail attachment with no network. Every text that comes from data
(names, reasons) is HTML-escaped. Inputs are named as ``summary.json`` names them (series by their de-identified
label, files by file name), never by a path or a patient attribute.

The pictures are drawn by the writer while it holds each input's pixels and mask (:func:`write_overlay_frames`), as
small JPEGs, into ``<output_dir>/.report-frames/``; the page is written from them with the summary, one input at a
time, and that folder is then deleted. An input whose frames are missing shows its ``overlay.png`` scaled down.
"""

from __future__ import annotations

import base64
import contextlib
import html
import io
import json
import logging
import os
import re
import shutil
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
from PIL import Image

from pipeline.atomic import atomic_output, write_json
from pipeline.outputs.overlay import overlay_outline, to_uint8
from pipeline.segments import Structure

__all__ = [
    "FRAMES_DIR",
    "MAX_FRAMES",
    "MAX_PICTURES",
    "MAX_SIDE",
    "REPORT_NAME",
    "frames_path",
    "overlay_frames",
    "write_html_report",
    "write_overlay_frames",
]

logger = logging.getLogger("pipeline.inference")

REPORT_NAME = "report.html"
FRAMES_DIR = ".report-frames"
"""Where the writers keep each input's frames until the page is written: one folder per run inside it (two runs
sharing an output folder keep apart), deleted with the page."""
MAX_SIDE = 256
"""The long side of the page's pictures (a slice of a series or volume, a 2D image), in pixels; smaller ones keep
their size, and are shown enlarged to this size."""
MAX_FRAMES = 300
"""The most frames a scroller holds; a longer series shows this many slices spread evenly over it."""
MAX_PICTURES = 1000
"""The most inputs whose pictures are drawn and embedded (a 2D image's are about 10-20 kB, a series' up to a few MB);
the inputs after them are listed with their figures and links, their overlay files linked rather than embedded."""
MAX_PAGE_BYTES = 200 * 2**20
"""The most bytes of pictures one page embeds, whatever the number of inputs: past it, inputs link their overlays, so
that a run of many long series still gives a page a browser opens."""
JPEG_QUALITY = 80
# 4:4:4 chroma: with the default 4:2:0 a 1-pixel red outline is smeared into a faint pink band two pixels wide.
_JPEG_OPTIONS = {"format": "JPEG", "quality": JPEG_QUALITY, "subsampling": 0}
_WINDOW_STRIDE = 4  # the volume's percentile window from every 4th row and column, as overlay.png's montage
_KINDS = (("dicom series", "DICOM studies"), ("nifti volume", "NIfTI volumes"), ("image", "2D images"))
_SERIES_FILES = ("seg.dcm", "labels.nii.gz", "overlay.png", "report.json")


# ------------------------------------------------------------------------------------------------------------ frames
def _jpeg_uri(rgb: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, **_JPEG_OPTIONS)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _volume_window(volume: np.ndarray) -> tuple[float, float]:
    low, high = np.percentile(volume[:, ::_WINDOW_STRIDE, ::_WINDOW_STRIDE].astype(np.float32), (1, 99))
    return float(low), float(high) if high > low else float(low) + 1.0


def overlay_frames(
    volume: np.ndarray,
    mask: np.ndarray,
    *,
    window: Sequence[float] | None = None,
    structures: Sequence[Structure] | None = None,
    max_side: int = MAX_SIDE,
    max_frames: int = MAX_FRAMES,
) -> dict[str, Any]:
    """Small JPEG pictures of a volume's slices with the mask outlined, for the page.

    Each slice is windowed, shrunk so that its long side is at most ``max_side`` pixels (bilinear; the mask nearest)
    and outlined after shrinking, so that the outline stays 1 pixel wide: in red, or each structure in its colour.
    JPEG at quality 80 with full-resolution colour: about 16 KB a 256-pixel slice of the demo CT once in base64, so
    the page's share of a 300-slice series of 512 x 512 slices is 4.8 MB (5.0 MB with 25 HU of noise), and no
    series holds more than ``max_frames`` frames. One slice at a time is drawn; only the encoded frames are kept.

    Args:
        volume: (N, H, W) image volume (HU for CT); a 2D image is (1, H, W).
        mask: (N, H, W) mask or label map aligned with ``volume``.
        window: ``(low, high)`` display window for every slice; default the volume's 1st-99th percentile.
        structures: outline each structure's pixels in its colour; ``None``: the non-zero pixels in red.
        max_side: the longest side of a frame, in pixels.
        max_frames: the most frames; a longer volume gets this many slices spread evenly, ends included.

    Returns:
        ``{"num_slices": N, "size": [width, height], "start": i, "frames": [[k, "data:image/jpeg;base64,..."],
        ...]}``: the frames' size in pixels, and each frame with its slice index k (0-based, as overlay.png and
        report.json count), in slice order; ``start`` is the position in ``frames`` of the slice with the most
        foreground.

    Raises:
        ValueError: shapes that are not (N, H, W) or do not match, ``max_side`` < 16, ``max_frames`` < 1.
    """
    volume, mask = np.asarray(volume), np.asarray(mask)
    if volume.ndim != 3 or volume.shape != mask.shape:
        raise ValueError(f"volume and mask must both be (N, H, W) of one shape, got {volume.shape} and {mask.shape}")
    if max_side < 16 or max_frames < 1:
        raise ValueError(f"max_side must be >= 16 and max_frames >= 1, got {max_side} and {max_frames}")
    window = tuple(window) if window is not None else _volume_window(volume)
    num_slices, height, width = volume.shape
    scale = min(1.0, max_side / max(height, width))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    indices = np.unique(np.rint(np.linspace(0, num_slices - 1, min(num_slices, max_frames))).astype(int))
    frames, areas = [], []
    for k in indices:
        gray, labels = to_uint8(volume[k], window), mask[k].astype(np.uint8)
        if scale < 1.0:
            gray = np.asarray(Image.fromarray(gray).resize(size, Image.Resampling.BILINEAR))
            labels = np.asarray(Image.fromarray(labels).resize(size, Image.Resampling.NEAREST))
        rgb = overlay_outline(gray, labels, window=(0, 255), structures=structures)
        frames.append([int(k), _jpeg_uri(rgb)])
        areas.append(int(np.count_nonzero(labels)))
    return {"num_slices": num_slices, "size": list(size), "start": int(np.argmax(areas)), "frames": frames}


def frames_path(output_dir: str | os.PathLike, folder: str, run: str = "") -> Path:
    """Where an input's frames wait for the page: ``<output_dir>/.report-frames/<run>/<folder>.json``, with ``run``
    the writing run's own folder name and ``folder`` the input's outputs folder relative to ``output_dir``
    (``study_<hash>/<series label>``, ``volumes/<name>``) or ``images/<name>`` for a 2D image."""
    return Path(output_dir) / FRAMES_DIR / run / f"{folder}.json"


def write_overlay_frames(volume: np.ndarray, mask: np.ndarray, path: str | os.PathLike, **kwargs: Any) -> Path:
    """Write :func:`overlay_frames` (``kwargs`` passed on) to ``path`` as JSON, atomically.

    Returns:
        ``path`` as a ``Path``.
    """
    return write_json(overlay_frames(volume, mask, **kwargs), path)


def _read_frames(path: Path) -> dict[str, Any] | None:
    try:
        frames = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not (isinstance(frames, dict) and frames.get("frames") and len(frames.get("size", ())) == 2):
        return None
    pictures = [frame[1] if isinstance(frame, list) and len(frame) == 2 else None for frame in frames["frames"]]
    # only the JPEG data the writer wrote reaches the page's src attributes
    return frames if all(isinstance(p, str) and _JPEG_URI.fullmatch(p) for p in pictures) else None


def _overlay_frames_from_png(path: Path, max_side: int) -> dict[str, Any] | None:
    """An input's ``overlay.png`` scaled down, as one frame (the page of a run whose frames are missing)."""
    try:
        with Image.open(path) as picture:
            picture = picture.convert("RGB")
            picture.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
            rgb = np.asarray(picture)
    except (OSError, ValueError):
        return None
    return {"num_slices": 1, "size": [rgb.shape[1], rgb.shape[0]], "start": 0, "frames": [[0, _jpeg_uri(rgb)]]}


# -------------------------------------------------------------------------------------------------------------- page
def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _href(relative: str) -> str:
    return _e(quote(relative, safe="/"))


def _number(value: Any, digits: int = 1) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "n/a"


_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:0 auto;max-width:1200px;padding:1em;color:#222;background:#fafafa}
h1{margin:.2em 0}h2{border-bottom:2px solid #ccc;margin-top:1.5em}h3{margin:1em 0 .4em}
.note{color:#555}.banner{padding:.5em 1em;border-radius:4px;background:#fde2c8;border:1px solid #e0a060}
.cards{display:flex;flex-wrap:wrap;gap:1em}
.input{background:#fff;border:1px solid #ccc;border-left:6px solid #4a4;border-radius:4px;padding:.6em;width:540px}
.input.flagged{border-left-color:#d90}.input.failed{border-left-color:#c22}
.input h4{margin:0 0 .4em;word-break:break-all}
.badge{font-size:12px;padding:1px 6px;border-radius:8px;color:#fff;background:#4a4;margin-left:.4em}
.badge.flagged{background:#d90}.badge.failed{background:#c22}
figure{margin:0 0 .4em}.scroller{display:inline-block}
.view{display:block;background:#000;max-width:100%;height:auto}.view.small{image-rendering:pixelated}
.scroller input{width:100%}.slice{font-variant-numeric:tabular-nums}
table{border-collapse:collapse;margin:.4em 0}td,th{border:1px solid #ddd;padding:2px 8px;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.reasons li{margin:.2em 0}.reasons .failed{color:#a00}.reasons .flagged{color:#a60}
"""

_SCRIPT = """
for (const scroller of document.querySelectorAll('.scroller')) {
  const frames = JSON.parse(scroller.querySelector('script.frames').textContent);
  const view = scroller.querySelector('img.view');
  const range = scroller.querySelector('input[type=range]');
  const label = scroller.querySelector('.slice');
  range.addEventListener('input', () => {
    const [slice, uri] = frames[Number(range.value)];
    view.src = uri;
    view.dataset.slice = slice;
    label.textContent = 'slice ' + slice;
  });
}
"""

_JPEG_URI = re.compile(r"data:image/jpeg;base64,[A-Za-z0-9+/]*={0,2}")
_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"


def _view(frames: dict[str, Any], alt: str, min_side: int) -> str:
    """The picture of one input: an ``<img>``, under a slider when there are several frames."""
    start = min(max(int(frames.get("start", 0)), 0), len(frames["frames"]) - 1)
    slice_index, uri = frames["frames"][start]
    width, height = (int(v) for v in frames["size"])
    zoom = max(1.0, min_side / max(width, height))  # tiny slices shown larger, pixels kept sharp
    small = " small" if zoom > 1.0 else ""
    img = (
        f'<img class="view{small}" src="{uri}" alt="{_e(alt)}" width="{round(width * zoom)}" '
        f'height="{round(height * zoom)}" data-slice="{_e(slice_index)}">'
    )
    if len(frames["frames"]) == 1:
        return f"<figure>{img}</figure>"
    data = json.dumps(frames["frames"], separators=(",", ":")).replace("<", "\\u003c")
    count = int(frames.get("num_slices", len(frames["frames"])))
    shown = "every slice" if len(frames["frames"]) == count else f"{len(frames['frames'])} slices spread over them"
    return (
        f'<figure class="scroller">{img}'
        f'<input type="range" min="0" max="{len(frames["frames"]) - 1}" value="{start}" '
        f'aria-label="slice of {_e(alt)}">'
        f'<figcaption><span class="slice">slice {_e(slice_index)}</span> of slices 0-{count - 1} ({shown})'
        f"</figcaption>"
        f'<script type="application/json" class="frames">{data}</script></figure>'
    )


def _reasons(record: Mapping[str, Any]) -> str:
    items = []
    if record.get("status") == "failed":
        items.append(f'<li class="failed">failed: {_e(record.get("error", "no reason recorded"))}</li>')
    items += [f'<li class="flagged">flagged: {_e(flag)}</li>' for flag in record.get("flags") or []]
    items += [f'<li class="warning">warning: {_e(warning)}</li>' for warning in record.get("warnings") or []]
    return f'<ul class="reasons">{"".join(items)}</ul>' if items else ""


def _measurements(record: Mapping[str, Any], report: Mapping[str, Any]) -> str:
    """Areas (2D) or volumes (series, volumes), each structure's when there are several."""
    if record.get("status") == "failed":
        return ""
    if record.get("kind") == "image":
        rows = [("foreground", record.get("area_px"), record.get("fraction"))]
        rows += [(s.get("label"), s.get("area_px"), s.get("fraction")) for s in record.get("structures") or []]
        body = "".join(
            f'<tr><td>{_e(name)}</td><td class="n">{_e(area)} px</td>'
            f'<td class="n">{_number(fraction * 100 if isinstance(fraction, (int, float)) else None, 2)} %</td></tr>'
            for name, area, fraction in rows
        )
        return f"<table><tr><th>structure</th><th>area</th><th>of the image</th></tr>{body}</table>"
    rows = [("segmented", record.get("segmented_volume_ml"), report.get("volume_before_postprocessing_ml"))]
    rows += [
        (s.get("label"), s.get("volume_ml"), s.get("volume_before_postprocessing_ml"))
        for s in report.get("structures") or []
    ]
    body = "".join(
        f'<tr><td>{_e(name)}</td><td class="n">{_number(after)} mL</td><td class="n">{_number(before)} mL</td></tr>'
        for name, after, before in rows
    )
    slices = f"<p>{_e(record.get('num_slices', 'n/a'))} slices</p>"
    return f"{slices}<table><tr><th>structure</th><th>volume</th><th>before post-processing</th></tr>{body}</table>"


def _links(output_dir: Path, files: Sequence[str]) -> str:
    """Links to those of ``files`` (relative to ``output_dir``) that exist."""
    found = [f for f in files if (output_dir / f).is_file()]
    if not found:
        return ""
    return '<p class="files">files: ' + " ".join(f'<a href="{_href(f)}">{_e(Path(f).name)}</a>' for f in found) + "</p>"


def _folder_name(name: Any) -> str | None:
    """``name`` when it can name one folder (a label from the summary), else None."""
    text = str(name)
    return text if text and text not in (".", "..") and "/" not in text and "\\" not in text else None


def _series_folders(output_dir: Path) -> dict[str, str]:
    """Each written series' folder relative to ``output_dir``, by its label: ``study_<hash>/<label>``."""
    folders = {}
    for report in sorted(output_dir.glob("*/*/report.json")):
        study = report.parent.parent.name
        if study not in ("volumes", "images", FRAMES_DIR):
            folders[report.parent.name] = f"{study}/{report.parent.name}"
    return folders


def _read_report(path: Path) -> dict[str, Any]:
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return report if isinstance(report, dict) else {}


class _Budget:
    """What the page may still embed: the pictures of :data:`MAX_PICTURES` inputs, :data:`MAX_PAGE_BYTES` bytes of
    them; and how many inputs' pictures were left out for it."""

    def __init__(self) -> None:
        self.inputs, self.bytes, self.left_out = MAX_PICTURES, MAX_PAGE_BYTES, 0

    def take(self, view: str) -> str:
        """``view`` when the budget has room for it (then spent), else nothing (counted as left out)."""
        if not view:
            return view
        if self.inputs <= 0 or len(view) > self.bytes:
            self.left_out += 1
            return ""
        self.inputs, self.bytes = self.inputs - 1, self.bytes - len(view)
        return view


def _card(record: Mapping[str, Any], output_dir: Path, folder: str | None, frames_dir: Path, budget: _Budget) -> str:
    """One input: its name and status, picture (while ``budget`` lasts), measurements, reasons and links."""
    name, status = record.get("input", "?"), str(record.get("status", "failed"))
    kind = record.get("kind", "")
    report, files, frames = {}, [], None
    if status != "failed" and kind != "image" and folder is not None:
        report = _read_report(output_dir / folder / "report.json")
        files = [f"{folder}/{f}" for f in report.get("outputs") or _SERIES_FILES]
    elif status != "failed" and kind == "image":
        files = list(record.get("outputs") or [])
    if status != "failed" and budget.inputs > 0:
        if kind == "image":
            overlay = next((f for f in files if f.endswith("_overlay.png")), None)
            frames = _read_frames(frames_dir / f"images/{name}.json")
            if frames is None and overlay is not None:
                frames = _overlay_frames_from_png(output_dir / overlay, MAX_SIDE)
        elif folder is not None:
            frames = _read_frames(frames_dir / f"{folder}.json")
            if frames is None:
                frames = _overlay_frames_from_png(output_dir / folder / "overlay.png", 2 * MAX_SIDE)
    elif status != "failed":
        budget.left_out += 1
    view = budget.take(_view(frames, str(name), MAX_SIDE) if frames is not None else "")
    return (
        f'<article class="input {_e(status)}" data-input="{_e(name)}" data-kind="{_e(kind)}" '
        f'data-status="{_e(status)}"><h4>{_e(name)}<span class="badge {_e(status)}">{_e(status)}</span></h4>'
        f"{view}{_measurements(record, report)}{_reasons(record)}{_links(output_dir, files)}</article>"
    )


def _inputs(count: Any) -> str:
    return f"{_e(count)} input" + ("" if count == 1 else "s")


def _header(summary: Mapping[str, Any]) -> str:
    model = summary.get("model") or {}
    weights = model.get("weights")
    weights = ", ".join(weights) if isinstance(weights, list) else weights
    inputs = summary.get("inputs") or []
    counts = (
        f"{_inputs(len(inputs))}: {_e(summary.get('num_ok', 0))} ok, {_e(summary.get('num_flagged', 0))} flagged, "
        f"{_e(summary.get('num_failed', 0))} failed"
    )
    if summary.get("num_not_run"):
        counts += f", {_e(summary['num_not_run'])} not run"
    banner = ""
    if summary.get("interrupted"):
        banner = (
            '<p class="banner interrupted">The run was interrupted: only the inputs below were written'
            + (f"; {_inputs(summary['num_not_run'])} were not run" if summary.get("num_not_run") else "")
            + ".</p>"
        )
    elif summary.get("num_failed"):
        banner = f'<p class="banner">{_inputs(summary["num_failed"])} failed: the reasons are below.</p>'
    return (
        f"<header><h1>Inference report</h1><p>model {_e(model.get('name', '?'))} version "
        f"{_e(model.get('version', '?'))}, weights {_e(weights or 'n/a')}"
        f"{', flip TTA' if model.get('flip_tta') else ''}; {_number(summary.get('wall_time_s'))} s</p>"
        f'<p class="counts">{counts}</p>{banner}'
        '<p class="note">Research output, not for clinical use. Open the linked files from this folder.</p></header>'
    )


def _left_out(summary: Mapping[str, Any]) -> str:
    rows = [("series not selected", r.get("input"), r.get("reason")) for r in summary.get("not_selected") or []]
    rows += [("file skipped", r.get("file"), r.get("reason")) for r in summary.get("skipped_files") or []]
    if not rows:
        return ""
    body = "".join(f"<tr><td>{_e(what)}</td><td>{_e(name)}</td><td>{_e(why)}</td></tr>" for what, name, why in rows)
    return (
        '<section id="left-out"><h2>Not segmented</h2>'
        f"<table><tr><th></th><th>name</th><th>reason</th></tr>{body}</table></section>"
    )


def _page(summary: Mapping[str, Any], output_dir: Path, frames_dir: Path) -> Iterator[str]:
    """The page in pieces, one input at a time (a study's frames are a few MB; a run may have many studies)."""
    title = f"Inference report: {(summary.get('model') or {}).get('name', '')}"
    yield (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{_e(title)}</title><link rel="icon" href="data:,"><style>{_STYLE}</style></head><body>'
    )
    yield _header(summary)
    yield "<main>"
    inputs = [r for r in summary.get("inputs") or [] if isinstance(r, Mapping)]
    series_folders = _series_folders(output_dir)
    budget = _Budget()
    for kind, heading in _KINDS:
        records = [r for r in inputs if r.get("kind") == kind]
        if not records:
            continue
        yield f'<section class="kind" data-kind="{_e(kind)}"><h2>{heading}</h2>'
        if kind == "dicom series":
            groups: dict[str, list[tuple[Mapping[str, Any], str | None]]] = {}
            for record in records:
                label = _folder_name(record.get("input"))
                folder = series_folders.get(label) if label and record.get("status") != "failed" else None
                groups.setdefault(folder.split("/")[0] if folder else "", []).append((record, folder))
            for study, members in groups.items():
                yield f'<section class="study"><h3>{_e(study) if study else "series not written"}</h3>'
                yield '<div class="cards">'
                for record, folder in members:
                    yield _card(record, output_dir, folder, frames_dir, budget)
                yield "</div></section>"
        else:
            yield '<div class="cards">'
            for record in records:
                label = _folder_name(record.get("input"))
                folder = f"volumes/{label}" if kind == "nifti volume" and label else None
                yield _card(record, output_dir, folder, frames_dir, budget)
            yield "</div>"
        yield "</section>"
    if budget.left_out:
        yield (
            f'<p class="banner">The pictures of {_inputs(budget.left_out)} are not embedded, so that the page stays '
            f"small enough to open ({MAX_PICTURES} inputs, {MAX_PAGE_BYTES // 2**20} MB of pictures at most): open "
            "their overlay files from the links.</p>"
        )
    yield _left_out(summary)
    yield f"</main><script>{_SCRIPT}</script></body></html>\n"


def write_html_report(summary: Mapping[str, Any], output_dir: str | os.PathLike, run: str = "") -> Path:
    """Write ``<output_dir>/report.html`` for a run's summary, atomically, then delete the run's frames.

    Args:
        summary: the run's summary, as ``summary.json`` holds it (``model``, ``inputs`` with each input's ``kind``,
            ``status`` and reasons, ``not_selected``, ``skipped_files``, the counts, ``interrupted``).
        output_dir: the run's output folder: the inputs' files, and the frames :func:`write_overlay_frames` wrote.
        run: the run's own folder in ``.report-frames`` (:func:`frames_path`); other runs' folders are left alone.

    Returns:
        The page's path.
    """
    output_dir = Path(output_dir)
    frames_dir = output_dir / FRAMES_DIR / run
    path = output_dir / REPORT_NAME
    with atomic_output(path) as tmp, tmp.open("w", encoding="utf-8") as page:
        for piece in _page(summary, output_dir, frames_dir):
            page.write(piece)
    shutil.rmtree(frames_dir, ignore_errors=True)
    with contextlib.suppress(OSError):  # the last run to finish removes the folder; another's may still be in it
        (output_dir / FRAMES_DIR).rmdir()
    return path
