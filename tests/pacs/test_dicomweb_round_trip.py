"""The bundle's inference with a real PACS at both ends: the demo study in Orthanc, a study URL as ``--input`` and
Orthanc's DICOMweb root as ``--send_to``; the SEGs read back from Orthanc equal a file-path run's pixel for pixel.

The fixture model (``tests/data/binary_model_964005e``) segments; nothing is trained. Orthanc runs with authentication
on, and the login reaches the pipeline through the file ``NETRC`` names, never through the command.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient
from orthanc_server import FIXTURE, PASSWORD, SMALL_UNET, assert_secret_absent, demo_study, stored_instances

from pipeline.pacs import SendError
from pipeline.pacs.__main__ import main as pacs_command

REFUSE_RESULTS = """
function ReceivedInstanceFilter(dicom, origin, info)
  return dicom.Modality ~= 'SEG' and dicom.Modality ~= 'SR'
end
"""


def _infer(bundle_workflow, output_dir: Path, input: str, **overrides) -> dict:
    workflow = bundle_workflow(
        "inference", input=input, output_dir=str(output_dir), checkpoint=str(FIXTURE / "model.pt"), **SMALL_UNET,
        **overrides,
    )  # fmt: skip
    workflow.initialize()
    workflow.run()
    return json.loads((output_dir / "summary.json").read_text())


def _temp_folders() -> set[str]:
    return {p for p in os.listdir(tempfile.gettempdir()) if p.startswith("pipeline-dicomweb-")}


def _seg_folders(output_dir: Path) -> dict[str, Path]:
    """Each written series' folder, by SeriesInstanceUID."""
    return {json.loads(r.read_text())["series_instance_uid"]: r.parent for r in output_dir.glob("*/*/report.json")}


def _read_back(server, study_uid: str, sop_uid: str) -> pydicom.Dataset:
    import requests

    session = requests.Session()
    session.auth = ("pipeline", PASSWORD)
    client = DICOMwebClient(server.dicomweb, session=session)
    series = client.search_for_instances(study_uid, search_filters={"SOPInstanceUID": sop_uid})[0]["0020000E"]
    return client.retrieve_instance(study_uid, series["Value"][0], sop_uid)


@pytest.fixture(scope="module")
def file_run(tmp_path_factory, uploaded_demo, bundle_workflow) -> Path:
    """The file-path run of the same study: the reference."""
    out = tmp_path_factory.mktemp("file_run")
    _infer(bundle_workflow, out, str(uploaded_demo.folder))
    return out


def test_study_url_in_seg_back(tmp_path, orthanc, uploaded_demo, file_run, bundle_workflow, netrc):
    before, temp_before = stored_instances(orthanc, uploaded_demo.study_uid), _temp_folders()
    out = tmp_path / "out"
    url = f"{orthanc.dicomweb}/studies/{uploaded_demo.study_uid}"
    summary = _infer(bundle_workflow, out, url, send_to=orthanc.dicomweb)

    reference = json.loads((file_run / "summary.json").read_text())
    assert [r["input"] for r in summary["inputs"]] == [r["input"] for r in reference["inputs"]]
    assert summary["not_selected"] == reference["not_selected"]  # the localizer, as for the files
    record = summary["pacs"]
    assert record["input"] == url and record["send_to"] == orthanc.dicomweb
    assert record["retrieved"]["series"] == 3 and record["retrieved"]["instances"] == 17
    assert record["not_sent"] == [] and len(record["sent"]) == 2
    assert _temp_folders() == temp_before  # the private copy is gone

    new = [uid for uid in stored_instances(orthanc, uploaded_demo.study_uid) if uid not in before]
    assert sorted(new) == sorted(uid for sent in record["sent"] for uid in sent["sop_instance_uids"])
    for sent in record["sent"]:  # every DICOM file of the series' report.json outputs
        report = json.loads((out / sent["files"][0]).parent.joinpath("report.json").read_text())
        assert sorted(Path(f).name for f in sent["files"]) == sorted(n for n in report["outputs"] if n.endswith(".dcm"))
    new = [uid for uid in stored_instances(orthanc, uploaded_demo.study_uid, "SEG") if uid not in before]
    references = _seg_folders(file_run)
    seen = []
    for sop_uid in new:
        seg = _read_back(orthanc, uploaded_demo.study_uid, sop_uid)
        assert seg.Modality == "SEG"
        referenced = seg.ReferencedSeriesSequence[0].SeriesInstanceUID
        seen.append(referenced)
        expected = pydicom.dcmread(references[referenced] / "seg.dcm")
        np.testing.assert_array_equal(seg.pixel_array, expected.pixel_array)
        frames = [f.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
                  for f in seg.PerFrameFunctionalGroupsSequence]  # fmt: skip
        assert frames == [f.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
                          for f in expected.PerFrameFunctionalGroupsSequence]  # fmt: skip
    assert sorted(seen) == uploaded_demo.axial_series  # one SEG per selected series
    assert_secret_absent(PASSWORD, out)


def test_series_url(tmp_path, orthanc, uploaded_demo, bundle_workflow, netrc):
    series = uploaded_demo.axial_series[0]
    url = f"{orthanc.dicomweb}/studies/{uploaded_demo.study_uid}/series/{series}"
    summary = _infer(bundle_workflow, tmp_path / "out", url)
    assert [r["series_instance_uid"] for r in summary["inputs"]] == [series]
    assert summary["pacs"] == {"input": url, "retrieved": summary["pacs"]["retrieved"]}
    assert summary["pacs"]["retrieved"]["instances"] == 8


def test_rejected_store_then_sent_again(tmp_path, orthanc, orthanc_factory, bundle_workflow, netrc):
    """A PACS that drops the results (its filter refuses SEG and SR, though its STOW answer says success): the
    results stay, summary.json lists them, and ``python -m pipeline.pacs send`` sends them to another server without
    the model."""
    study = demo_study(tmp_path / "study", orthanc, seed=7)  # its own study: the others' stay free of results
    refusing = orthanc_factory(lua=REFUSE_RESULTS)
    out = tmp_path / "out"
    url = f"{orthanc.dicomweb}/studies/{study.study_uid}"
    with pytest.raises(RuntimeError) as raised:  # MONAI wraps the expression's error; ours is the cause
        _infer(bundle_workflow, out, url, send_to=refusing.dicomweb)
    error = raised.value.__cause__
    assert isinstance(error, SendError), raised.value
    message = str(error)
    assert "\n" not in message and "2 of 2 series not sent" in message and "python -m pipeline.pacs send" in message
    assert "lists 0 of" in message
    record = json.loads((out / "summary.json").read_text())["pacs"]
    assert record["sent"] == [] and len(record["not_sent"]) == 2
    for entry in record["not_sent"]:
        assert (out / entry["files"][0]).is_file()
    assert stored_instances(refusing, study.study_uid) == []  # nothing stored there

    before = stored_instances(orthanc, study.study_uid)
    assert pacs_command(["send", "--output_dir", str(out), "--send_to", orthanc.dicomweb]) == 0
    record = json.loads((out / "summary.json").read_text())["pacs"]
    assert record["not_sent"] == [] and len(record["sent"]) == 2 and record["send_to"] == orthanc.dicomweb
    sent = sum(len(entry["sop_instance_uids"]) for entry in record["sent"])
    assert len(stored_instances(orthanc, study.study_uid)) == len(before) + sent
    assert pacs_command(["send", "--output_dir", str(out)]) == 0  # nothing left: nothing sent twice
    assert len(stored_instances(orthanc, study.study_uid)) == len(before) + sent
    assert_secret_absent(PASSWORD, out)


def test_unselected_series_not_retrieved_results_over_dimse(tmp_path, orthanc, bundle_workflow, netrc):
    """``--series_description B40f``: the series listing already shows that the B70f series and the localizer do not
    match, so they are never retrieved; ``--send_to dicom://...`` stores the results with C-STORE."""
    study = demo_study(tmp_path / "study", orthanc, seed=9)  # its own study: the others' stay free of results
    url = f"{orthanc.dicomweb}/studies/{study.study_uid}"
    summary = _infer(bundle_workflow, tmp_path / "out", url, series_description="B40f", send_to=orthanc.dimse)
    retrieved = summary["pacs"]["retrieved"]
    assert retrieved["series"] == 1 and retrieved["instances"] == 8
    assert sorted(s["series_instance_uid"] for s in retrieved["not_retrieved"]) == sorted(
        {*study.axial_series, study.localizer} - {summary["inputs"][0]["series_instance_uid"]}
    )
    assert all("does not match 'B40f'" in s["reason"] for s in retrieved["not_retrieved"])
    (sent,) = summary["pacs"]["sent"]
    assert summary["pacs"]["send_to"] == orthanc.dimse
    assert sorted(stored_instances(orthanc, study.study_uid, "SEG") + stored_instances(
        orthanc, study.study_uid, "SR")) == sent["sop_instance_uids"]  # fmt: skip
