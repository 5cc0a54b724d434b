"""The real two-series CT study (``/work/shared/data/dicom``, or ``PIPELINE_REAL_DICOM``) through Orthanc: uploaded,
segmented from its study URL with the results sent back, and compared with the file-path run of the same files.
Skipped when the study is not there; it is never copied into the repository."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
from orthanc_server import FIXTURE, PASSWORD, SMALL_UNET, assert_secret_absent, stored_instances, upload

REAL_STUDY = Path(os.environ.get("PIPELINE_REAL_DICOM", "/work/shared/data/dicom"))


def _infer(bundle_workflow, output_dir: Path, input: str, **overrides) -> float:
    workflow = bundle_workflow(
        "inference", input=input, output_dir=str(output_dir), checkpoint=str(FIXTURE / "model.pt"), **SMALL_UNET,
        **overrides,
    )  # fmt: skip
    workflow.initialize()
    tick = time.perf_counter()
    workflow.run()
    return time.perf_counter() - tick


@pytest.mark.slow
def test_real_study_round_trip(tmp_path, orthanc, bundle_workflow, netrc):
    files = sorted(REAL_STUDY.rglob("*.dcm")) if REAL_STUDY.is_dir() else []
    if not files:
        pytest.skip(f"no real DICOM study at {REAL_STUDY} (PIPELINE_REAL_DICOM names another)")
    upload(orthanc, REAL_STUDY)
    study_uid = pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID
    before = stored_instances(orthanc, study_uid, "SEG")

    file_s = _infer(bundle_workflow, tmp_path / "files", str(REAL_STUDY))
    url = f"{orthanc.dicomweb}/studies/{study_uid}"
    url_s = _infer(bundle_workflow, tmp_path / "url", url, send_to=orthanc.dicomweb)
    print(f"real study: file path {file_s:.1f} s, DICOMweb round trip {url_s:.1f} s")

    by_path = json.loads((tmp_path / "files" / "summary.json").read_text())
    summary = json.loads((tmp_path / "url" / "summary.json").read_text())
    assert [r["input"] for r in summary["inputs"]] == [r["input"] for r in by_path["inputs"]]
    assert [r["status"] for r in summary["inputs"]] == [r["status"] for r in by_path["inputs"]]
    assert summary["pacs"]["not_sent"] == []
    written = [r for r in summary["inputs"] if r["status"] in ("ok", "flagged")]
    assert len(summary["pacs"]["sent"]) == len(written) >= 1
    assert len(stored_instances(orthanc, study_uid, "SEG")) == len(before) + len(written)
    for sent in summary["pacs"]["sent"]:
        seg = next(f for f in sent["files"] if f.endswith("seg.dcm"))
        ours = pydicom.dcmread(tmp_path / "url" / seg).pixel_array
        np.testing.assert_array_equal(ours, pydicom.dcmread(tmp_path / "files" / seg).pixel_array)
    assert_secret_absent(PASSWORD, tmp_path / "url", tmp_path / "files")
