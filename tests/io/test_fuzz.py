"""Seeded fuzzing of the slice readers and the intake check: flipped bytes and truncations of valid files.

Every case must end in a loaded slice or in a ``SliceReadError`` whose message names the file, within a time limit;
never another exception, a hang, or an "ok" for an image that holds NaN (the pre-flight must flag it).
"""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tifffile
import torch
from PIL import Image
from pydicom.uid import RLELossless

from pipeline.demo.study import write_ct_series
from pipeline.intake import check_dataset
from pipeline.io import LoadSlice, SliceReadError

CASES = 600
SECONDS_PER_CASE = 10


def _sources(folder: Path) -> dict[str, bytes]:
    """Valid files of every kind the pipeline reads, as bytes."""
    rng = np.random.default_rng(0)
    hu = (rng.normal(0, 300, (48, 40)) - 400).astype(np.int16)
    mask = (rng.random((48, 40)) > 0.7).astype(np.uint8)
    Image.fromarray(mask * 255).save(folder / "mask.png")
    Image.fromarray((rng.random((48, 40, 3)) * 255).astype(np.uint8)).save(folder / "rgb.png")
    Image.fromarray((rng.random((48, 40)) * 65535).astype(np.uint16)).save(folder / "gray16.png")
    Image.fromarray((rng.random((48, 40)) * 255).astype(np.uint8)).save(folder / "gray.jpg")
    tifffile.imwrite(folder / "hu.tif", hu)
    Image.fromarray(mask).save(folder / "mask_lzw.tif", compression="tiff_lzw")
    volume = hu[None].astype(np.float32)
    series = {"study_uid": "1.2.3", "description": "fuzz"}
    write_ct_series(folder / "ct", volume, series_uid="1.2.3.1", series_number=1, file_names=["ct.dcm"], **series)
    write_ct_series(
        folder / "rle", volume, series_uid="1.2.3.2", series_number=2, file_names=["rle.dcm"],
        transfer_syntax=RLELossless, **series,
    )  # fmt: skip
    nib.save(nib.Nifti1Image(hu.astype(np.float32), np.eye(4)), folder / "hu.nii.gz")
    nib.save(nib.Nifti1Image(hu, np.eye(4)), folder / "hu.nii")
    paths = [*folder.glob("*.*"), folder / "ct" / "ct.dcm", folder / "rle" / "rle.dcm"]
    return {p.name: p.read_bytes() for p in paths}


def _mutate(data: bytes, rng: np.random.Generator) -> tuple[str, bytes]:
    raw = bytearray(data)
    kind = rng.choice(["flip", "flip_header", "truncate", "zero_run"])
    if kind == "flip":  # anywhere
        for at in rng.integers(0, len(raw), rng.integers(1, 9)):
            raw[at] = int(rng.integers(0, 256))
    elif kind == "flip_header":  # in the first 400 bytes, where sizes, types and offsets are
        for at in rng.integers(0, min(400, len(raw)), rng.integers(1, 5)):
            raw[at] = int(rng.integers(0, 256))
    elif kind == "truncate":
        raw = raw[: int(rng.integers(0, len(raw)))]
    else:
        start = int(rng.integers(0, len(raw)))
        raw[start : start + int(rng.integers(1, 64))] = bytes(min(64, len(raw) - start))[: len(raw[start : start + 64])]
    return kind, bytes(raw)


@contextmanager
def _time_limit(seconds: int) -> Iterator[None]:
    def expire(signum, frame):
        raise TimeoutError(f"more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.skipif(not hasattr(signal, "SIGALRM"), reason="the per-case time limit needs SIGALRM (POSIX)")
def test_fuzzed_files_load_or_fail_with_their_name(tmp_path):
    sources = _sources(tmp_path)
    rng = np.random.default_rng(20261129)
    loader = LoadSlice()
    outcomes: Counter[str] = Counter()
    failures = []
    for case in range(CASES):
        name = sorted(sources)[case % len(sources)]
        kind, data = _mutate(sources[name], rng)
        path = tmp_path / "cases" / f"{case:04d}_{name}"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
        try:
            with _time_limit(SECONDS_PER_CASE):
                image = loader(path)
            outcomes["loaded"] += 1
            if not torch.isfinite(image).all():  # the intake must refuse it by name
                report = check_dataset([{"image": str(path), "label": str(tmp_path / "mask.png")}], num_workers=1)
                assert any("NaN" in f.problem or "infinite" in f.problem for f in report.fatal), (case, name, kind)
                outcomes["non-finite, refused by the pre-flight"] += 1
        except SliceReadError as e:
            outcomes["refused"] += 1
            if path.name not in str(e):
                failures.append((case, name, kind, f"message does not name the file: {e}"))
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as e:  # any other exception (a Rust decoder's PanicException too) is what this looks for
            failures.append((case, name, kind, f"{type(e).__name__}: {e}"))
    print(dict(outcomes))
    assert not failures, failures[:10]
    assert outcomes["refused"] > CASES // 10 and outcomes["loaded"] > CASES // 10  # both outcomes were exercised
