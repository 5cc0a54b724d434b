"""Pre-flight check: read every image/mask pair once before training and report what is wrong, by file name.

Modelled on nnU-Net's ``verify_dataset_integrity``. Fatal problems (unreadable files, missing partners, shape
mismatches, non-binary masks, NaN or infinite values) stop a run before its first epoch with one message that
lists all of them; empty masks are reported as warnings (an empty mask is legitimate for some tasks) unless
``empty_masks="error"``. Nothing is dropped silently.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from pipeline.io import LoadSlice
from pipeline.transforms import BinarizeMask, auto_mask_threshold, mask_value_report

__all__ = ["DatasetCheckError", "DatasetReport", "Finding", "check_dataset", "preflight"]

logger = logging.getLogger(__name__)

EMPTY_MASK_POLICIES = ("ignore", "warn", "error")
_BINARIZE = BinarizeMask()


class DatasetCheckError(ValueError):
    """Raised when the pre-flight check finds fatal problems; the message lists every one of them."""


@dataclass(frozen=True)
class Finding:
    """One problem found in one case.

    Attributes:
        case: the file (relative to the dataset root) the problem is about.
        problem: what is wrong, in words.
        fatal: whether training must not start.
    """

    case: str
    problem: str
    fatal: bool


@dataclass
class DatasetReport:
    """What the pre-flight check found.

    Attributes:
        num_pairs: number of items checked.
        findings: every problem, fatal or not, in dataset order.
        foreground_fraction: mean share of foreground pixels over the readable masks.
    """

    num_pairs: int
    findings: list[Finding] = field(default_factory=list)
    foreground_fraction: float = float("nan")

    @property
    def fatal(self) -> list[Finding]:
        return [f for f in self.findings if f.fatal]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if not f.fatal]

    def summary(self, limit: int = 50) -> str:
        """Human-readable report: one headline, then one line per finding (at most ``limit`` of each kind)."""
        lines = [
            f"pre-flight check of {self.num_pairs} pairs: {len(self.fatal)} fatal problem(s), "
            f"{len(self.warnings)} warning(s); mean foreground {self.foreground_fraction:.1%}"
        ]
        for title, group in (("fatal", self.fatal), ("warning", self.warnings)):
            lines += [f"  [{title}] {f.case}: {f.problem}" for f in group[:limit]]
            if len(group) > limit:
                lines.append(f"  ... and {len(group) - limit} more {title} finding(s)")
        return "\n".join(lines)


def _display_root(items: Sequence[dict]) -> str:
    paths = [os.path.abspath(p) for item in items for p in (item.get("image"), item.get("label")) if p]
    if not paths:
        return ""
    root = os.path.commonpath(paths)
    return root if not os.path.isfile(root) else os.path.dirname(root)


def _check_pair(item: dict, loader: LoadSlice, root: str, empty_masks: str) -> tuple[list[Finding], float]:
    def show(path: str) -> str:
        return os.path.relpath(os.path.abspath(path), root) if root else path

    image_path, label_path = item.get("image"), item.get("label")
    case = show(image_path or label_path)
    if image_path is None:
        return [Finding(case, "mask has no matching image", True)], float("nan")
    if label_path is None:
        return [Finding(case, "image has no matching mask", True)], float("nan")

    findings: list[Finding] = []
    arrays = {}
    for key, path in (("image", image_path), ("mask", label_path)):
        try:
            arrays[key] = np.asarray(loader(path))
        except Exception as e:  # every reader failure is reported by name rather than stopping the scan
            findings.append(Finding(show(path), f"unreadable {key}: {e}", True))
    if len(arrays) < 2:
        return findings, float("nan")
    image, mask = arrays["image"], arrays["mask"]
    if image.shape[1:] != mask.shape[1:]:
        findings.append(
            Finding(
                case, f"image is {image.shape[1:]} (H, W) but its mask {show(label_path)} is {mask.shape[1:]}", True
            )
        )
    for key, array in arrays.items():
        bad = ~np.isfinite(array)
        if bad.any():
            findings.append(Finding(case, f"{key} has {int(bad.sum())} NaN or infinite value(s)", True))
    value_problem = mask_value_report(mask)
    if value_problem is not None:
        findings.append(Finding(show(label_path), f"mask is not binary: {value_problem}", True))
        return findings, float("nan")
    notes = []
    if mask.shape[0] > 1:
        notes.append(f"{mask.shape[0]}-channel mask reduced to one (channel maximum)")
    num_values = len(np.unique(mask))
    if num_values > 2:
        notes.append(f"{num_values} distinct values at edges (compression or interpolation noise)")
    if notes:
        threshold = auto_mask_threshold(mask)
        findings.append(Finding(show(label_path), f"{'; '.join(notes)}; binarised at {threshold:g}", False))
    foreground = float(np.asarray(_BINARIZE(mask)).mean())
    if foreground == 0.0 and empty_masks != "ignore":
        findings.append(Finding(show(label_path), "mask is empty (no foreground pixel)", empty_masks == "error"))
    if image.size and float(image.max()) == float(image.min()):
        findings.append(Finding(case, f"image is constant ({float(image.min())})", False))
    return findings, foreground


def check_dataset(items: Sequence[dict], empty_masks: str = "warn", num_workers: int = 4) -> DatasetReport:
    """Read every pair and collect problems without raising.

    Args:
        items: datalist items with ``"image"`` and ``"label"`` paths (``None`` marks a missing partner), as
            returned by :func:`pipeline.data.load_datalist`.
        empty_masks: ``"warn"`` (default), ``"error"`` (fatal) or ``"ignore"``.
        num_workers: threads used to read files. Default 4.

    Returns:
        The report; file names in it are relative to the common folder of the dataset.

    Raises:
        ValueError: when ``empty_masks`` is not one of ``"ignore"``, ``"warn"``, ``"error"``.
    """
    if empty_masks not in EMPTY_MASK_POLICIES:
        raise ValueError(f"empty_masks must be one of {EMPTY_MASK_POLICIES}, got {empty_masks!r}.")
    loader = LoadSlice()
    root = _display_root(items)
    with ThreadPoolExecutor(max(1, num_workers)) as pool:
        results = list(pool.map(lambda item: _check_pair(item, loader, root, empty_masks), items))
    report = DatasetReport(num_pairs=len(items))
    fractions = []
    for findings, fraction in results:
        report.findings += findings
        if not np.isnan(fraction):
            fractions.append(fraction)
    if fractions:
        report.foreground_fraction = float(np.mean(fractions))
    return report


def preflight(items: Sequence[dict], empty_masks: str = "warn", num_workers: int = 4) -> list[dict]:
    """Check a dataset before training; log warnings and stop on fatal problems.

    Args:
        items: datalist items (see :func:`check_dataset`).
        empty_masks: policy for empty masks, see :func:`check_dataset`.
        num_workers: threads used to read files.

    Returns:
        ``items`` unchanged, so a config can chain it.

    Raises:
        DatasetCheckError: listing every fatal problem with its file name.
    """
    report = check_dataset(items, empty_masks=empty_masks, num_workers=num_workers)
    if report.fatal:
        raise DatasetCheckError(report.summary())
    logger.info(report.summary())
    return list(items)
