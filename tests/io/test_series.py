"""Series discovery: grouping, skipped files with reasons, selection rules, labels, and no folder names in messages."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from pipeline.io import (
    DicomSeries,
    DicomSeriesError,
    SeriesRules,
    group_series,
    load_series_volume,
    read_header,
    scan_dicom_folder,
    select_series,
    series_modalities,
)

# ---- grouping ----


def test_two_series_in_one_folder_are_grouped_apart(write_series, ct_volume, phi_dir):
    """Two same-size series written into one folder, files interleaved by name: two series, never one volume."""
    first = write_series(ct_volume(4), folder_name="mixed", file_names=[f"IM{2 * k:03d}" for k in range(4)])
    second = write_series(
        ct_volume(4, offset=400),
        folder_name="mixed",
        series_number=3,
        file_names=[f"IM{2 * k + 1:03d}" for k in range(4)],
    )
    series, skipped = scan_dicom_folder(phi_dir)
    assert skipped == []
    assert [s.series_number for s in series] == [2, 3]
    assert [sorted(s.files) for s in series] == [sorted(first), sorted(second)]
    for s, offset in zip(series, (0, 400), strict=True):
        np.testing.assert_array_equal(load_series_volume(s).array, ct_volume(4, offset=offset))


def test_one_uid_with_two_sizes_is_split_with_a_warning(write_series, ct_volume, phi_dir, caplog):
    """A SeriesInstanceUID holding 64x64 and 32x32 stacks becomes parts _a (more files) and _b, and says so."""
    uid = generate_uid()
    write_series(ct_volume(3), series_uid=uid, file_names=["a1", "a2", "a3"])
    write_series(ct_volume(2, size=32), series_uid=uid, file_names=["b1", "b2"])
    with caplog.at_level(logging.WARNING):
        series, _ = scan_dicom_folder(phi_dir)
    assert [(s.part, s.num_slices, s.rows) for s in series] == [("a", 3, 64), ("b", 2, 32)]
    assert series[0].label.endswith("_a") and series[1].label.endswith("_b")
    assert series[0].label[:-2] == series[1].label[:-2]
    assert "split into" in caplog.text and series[1].label in caplog.text


def test_one_uid_with_two_orientations_is_split(write_series, ct_volume, phi_dir):
    uid = generate_uid()
    write_series(ct_volume(2), series_uid=uid, file_names=["ax1", "ax2"])
    write_series(ct_volume(2), series_uid=uid, file_names=["cor1", "cor2"], orientation=(1, 0, 0, 0, 0, -1))
    series, _ = scan_dicom_folder(phi_dir)
    assert sorted(s.orientation for s in series) == [(1.0, 0.0, 0.0, 0.0, 0.0, -1.0), (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)]
    assert len({s.label for s in series}) == 2


def test_deterministic_order_by_study_then_series_number(write_series, ct_volume, phi_dir):
    for number in (12, 3, 7):
        write_series(ct_volume(1), folder_name=f"series {number}", series_number=number)
    series, _ = scan_dicom_folder(phi_dir)
    assert [s.series_number for s in series] == [3, 7, 12]
    again, _ = group_series(reversed([f for s in series for f in s.files]))
    assert [s.label for s in again] == [s.label for s in series]


def test_label_and_study_label():
    series = DicomSeries("1.2.3", "1.2.3.4", 2, "CT", "", (), 64, 64, None, [Path("x")])
    assert re.fullmatch(r"CT_s002_[0-9a-f]{8}", series.label)
    assert re.fullmatch(r"study_[0-9a-f]{8}", series.study_label)
    assert DicomSeries("1", "1.2", None, "", "", (), 1, 1, None).label.startswith("OT_sNA_")


def test_read_header_defers_pixel_data(write_series, ct_volume):
    path = write_series(ct_volume(1))[0]
    ds = read_header(path)
    assert "PixelData" in ds and ds.get_item("PixelData", keep_deferred=True).value is None  # located, not read
    np.testing.assert_array_equal(ds.pixel_array.astype(np.float32) - 1024, ct_volume(1)[0])


# ---- files that are skipped, each with a reason naming the file ----


def _without_pixel_data(path: Path) -> None:
    ds = pydicom.dcmread(path)
    del ds.PixelData
    ds.save_as(path)


def _without_series_uid(path: Path) -> None:
    ds = pydicom.dcmread(path)
    del ds.SeriesInstanceUID
    ds.save_as(path)


def _truncate(keep: int):
    def cut(path: Path) -> None:
        path.write_bytes(path.read_bytes()[:keep])

    return cut


SKIP_CASES = [
    # (damage to one of three slices, words expected in the reason)
    (_without_pixel_data, "no PixelData"),
    (_without_series_uid, "no SeriesInstanceUID"),
    (_truncate(700), "truncated"),  # inside the header
    (_truncate(-1000), "truncated"),  # inside the pixel data
    (lambda p: p.write_bytes(b"\0" * 128 + b"DICM" + b"not a data set " * 20), "truncated or corrupt"),
]


@pytest.mark.parametrize(("damage", "expected"), SKIP_CASES)
def test_unusable_file_is_skipped_with_its_name_and_reason(
    write_series, ct_volume, phi_dir, caplog, assert_no_phi, damage, expected
):
    files = write_series(ct_volume(3))
    damage(files[1])
    with caplog.at_level(logging.WARNING):
        series, skipped = scan_dicom_folder(phi_dir)
    assert [s.files for s in series] == [[files[0], files[2]]]
    assert [s.path for s in skipped] == [files[1]]
    assert skipped[0].reason.startswith(f"{files[1].name}: ") and expected in skipped[0].reason
    assert skipped[0].reason in caplog.text
    assert_no_phi(skipped[0].reason, caplog.text)


def test_non_dicom_files_among_slices_are_skipped(write_series, ct_volume, phi_dir, caplog, assert_no_phi):
    files = write_series(ct_volume(2))
    (files[0].parent / "README.txt").write_text("exported by PACS for Doe^Jane PID-4711\n")
    (files[0].parent / "empty.dcm").write_bytes(b"")
    with caplog.at_level(logging.WARNING):
        series, skipped = scan_dicom_folder(phi_dir)
    assert series[0].files == files
    assert [s.reason for s in skipped] == [
        "README.txt: not DICOM (no 128-byte preamble + 'DICM')",
        "empty.dcm: not DICOM (no 128-byte preamble + 'DICM')",
    ]
    assert_no_phi(caplog.text)


def test_read_header_errors_name_the_file_only(phi_dir, assert_no_phi):
    (phi_dir / "notes.txt").write_text("hello")
    with pytest.raises(DicomSeriesError, match=r"^notes\.txt: not a DICOM file") as info:
        read_header(phi_dir / "notes.txt")
    assert_no_phi(str(info.value))
    with pytest.raises(DicomSeriesError, match=r"^gone\.dcm: file not found"):
        read_header(phi_dir / "gone.dcm")


def test_empty_folder_gives_no_series_and_says_so(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        assert scan_dicom_folder(tmp_path) == ([], [])
    assert "No DICOM image series found" in caplog.text


def test_missing_folder_is_an_error_without_its_name(tmp_path, assert_no_phi):
    with pytest.raises(NotADirectoryError) as info:
        scan_dicom_folder(tmp_path / "Doe^Jane PID-4711")
    assert_no_phi(str(info.value))


# ---- selection ----


def _series(number: int, modality="CT", image_type=("ORIGINAL", "PRIMARY", "AXIAL"), description="", n=30, study="1"):
    files = [Path(f"{number}-{k}.dcm") for k in range(n)]
    return DicomSeries(study, f"1.2.{number}", number, modality, description, image_type, 64, 64, None, files)


CANDIDATES = [
    _series(1, image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"), description="Topogram 0.6 T20f", n=2),
    _series(2, description="ThoraxRoutine 8.0 B70f", n=30),
    _series(3, description="ThoraxRoutine 8.0 B40f", n=30),
    _series(4, image_type=("DERIVED", "SECONDARY", "MPR"), description="Coronal MPR", n=60),
    _series(5, modality="PT", description="PET WB", n=90),
    _series(6, description="Lung 1.0 B60f", n=40, study="2"),
]

SELECTION_CASES = [
    # (rules, numbers chosen, {number: words in the reason it was not chosen})
    (
        SeriesRules(),
        [2, 3, 6],
        {1: "ImageType contains LOCALIZER", 4: "ImageType contains SECONDARY", 5: "modality PT"},
    ),
    (SeriesRules(modalities=None, exclude_image_types=()), [1, 2, 3, 4, 5, 6], {}),
    (SeriesRules(modalities=("pt",)), [5], {2: "modality CT is not one of pt"}),
    (SeriesRules(description_pattern="b40F"), [3], {2: "does not match 'b40F'"}),
    (SeriesRules(min_slices=35), [6], {2: "30 slices, fewer than min_slices=35"}),
    (SeriesRules(largest_only=True), [2, 6], {3: "not the largest series of its study (30 slices; CT_s002_"}),
    (SeriesRules(modalities=None, largest_only=True), [5, 6], {2: "not the largest", 1: "LOCALIZER"}),
]


@pytest.mark.parametrize(("rules", "chosen", "reasons"), SELECTION_CASES)
def test_selection_rules(rules, chosen, reasons, caplog):
    with caplog.at_level(logging.INFO):
        selected, rejected = select_series(CANDIDATES, rules)
    assert [s.series_number for s in selected] == chosen
    assert len(selected) + len(rejected) == len(CANDIDATES)
    why = {s.series_number: reason for s, reason in rejected}
    for number, words in reasons.items():
        assert words in why[number]
    lines = [r.getMessage() for r in caplog.records if r.name == "pipeline.io.dicom_series"]
    for s in CANDIDATES:  # one line per series, saying what was decided and why
        (line,) = [line for line in lines if line.startswith(f"{s.label}: ")]
        assert ("selected (" in line) == (s.series_number in chosen)
        assert f"'{s.description}'" in line


def test_selection_log_line_format(caplog):
    with caplog.at_level(logging.INFO):
        select_series(CANDIDATES[:2])
    assert f"{CANDIDATES[1].label}: selected (CT, 30 slices, ORIGINAL\\PRIMARY\\AXIAL, 'ThoraxRoutine 8.0 B70f')" in (
        caplog.text
    )
    assert f"{CANDIDATES[0].label}: not selected: ImageType contains LOCALIZER (CT, 2 slices" in caplog.text


def test_nothing_selected_is_a_warning(caplog):
    with caplog.at_level(logging.WARNING):
        assert select_series(CANDIDATES, SeriesRules(modalities=("MR",)))[0] == []
    assert "None of the 6 series matched" in caplog.text


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"min_slices": 0}, "min_slices must be at least 1, got 0"), ({"description_pattern": "B70f("}, "not a valid")],
)
def test_invalid_rules(kwargs, match):
    with pytest.raises(ValueError, match=re.escape(match)):
        SeriesRules(**kwargs)


@pytest.mark.parametrize("modality, expected", [("XR", ["CR", "DX"]), ("CT", ["CT"]), ("MR", ["MR"])])
def test_series_modalities_of_a_model(modality, expected):
    assert series_modalities(modality) == expected


@pytest.mark.parametrize("value, expected", [("true", True), ("no", False), (True, True)])
def test_largest_only_reads_command_line_words(value, expected):
    assert SeriesRules(largest_only=value).largest_only is expected
