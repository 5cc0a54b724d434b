"""Fixtures for the DICOM series tests: small synthetic CT series written with ``write_ct_series``.

Every series is written under folders named like a PACS export that carry a (fake) patient name and ID, so that each
test can check that no message ever shows a folder name.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from pydicom.uid import generate_uid

from pipeline.demo.study import write_ct_series

SIZE = 64  # rows and columns of the synthetic slices
# Strings from the folder names below; none may appear in any message, log record or reason.
PHI_STRINGS = ("Doe^Jane", "PID-4711", "ThoraxRoutine")


def _ct_volume(num_slices: int = 5, size: int = SIZE, offset: int = 0) -> np.ndarray:
    """(N, size, size) float32 HU: an asymmetric picture plus 20 HU per slice, all values even and in [-1000, 1800].

    Slice k differs from every other slice (its mean rises by 20 HU per slice), so a wrong slice order or an
    interleaved series shows in the values; the bright block in the top-left corner shows flips.
    """
    rows, cols = np.mgrid[0:size, 0:size]
    picture = -1000.0 + 2.0 * np.rint(200 * rows / size + 100 * cols / size)
    picture[4:14, 6:20] = 800.0
    return np.stack([picture + 20.0 * k + offset for k in range(num_slices)]).astype(np.float32)


@pytest.fixture
def phi_dir(tmp_path: Path) -> Path:
    """An export folder whose names carry a patient name and ID, as PACS exports do."""
    folder = tmp_path / "Doe^Jane PID-4711" / "04-25-2007-NA-ThoraxRoutine Adult-34834"
    folder.mkdir(parents=True)
    return folder


SeriesWriter = Callable[..., list[Path]]


@pytest.fixture
def write_series(phi_dir: Path) -> SeriesWriter:
    """``write_series(volume, folder_name="series", series_number=2, **write_ct_series_kwargs) -> files``.

    Writes under ``phi_dir / folder_name`` with fresh study and series UIDs unless given.
    """
    study_uid = generate_uid()

    def write(
        volume: np.ndarray, folder_name: str = "2.000000-ThoraxRoutine  8.0.0  B70f-62919", **kwargs
    ) -> list[Path]:
        kwargs.setdefault("study_uid", study_uid)
        kwargs.setdefault("series_uid", generate_uid())
        kwargs.setdefault("series_number", 2)
        kwargs.setdefault("description", "ThoraxRoutine 8.0 B70f")
        return write_ct_series(phi_dir / folder_name, volume, **kwargs)

    return write


def _assert_no_phi(*texts: str) -> None:
    """No folder name (patient name or ID) appears in any of ``texts``."""
    for text in texts:
        for secret in PHI_STRINGS:
            assert secret not in text, f"{secret!r} leaked into: {text}"


@pytest.fixture
def ct_volume() -> Callable[..., np.ndarray]:
    """``ct_volume(num_slices=5, size=64, offset=0) -> (N, size, size)`` float32 HU, see ``_ct_volume``."""
    return _ct_volume


@pytest.fixture
def assert_no_phi() -> Callable[..., None]:
    """``assert_no_phi(*texts)``: fails when a folder name (patient name or ID) appears in any text."""
    return _assert_no_phi
