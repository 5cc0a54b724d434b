"""The PACS node's parts that need no server: its state folder, DIMSE addresses, the listing rules, a peer that is
down. Tables over what a user types or what a crash leaves behind."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from orthanc_server import FIXTURE, SMALL_UNET, free_port

from pipeline.io import SeriesRules
from pipeline.pacs.dimse import DimseServer, parse_dimse_url
from pipeline.pacs.errors import DimseError
from pipeline.pacs.send import destination
from pipeline.pacs.state import NodeState, SeriesRecord, record_name
from pipeline.pacs.watch import check_study_date, first_day, window_start

UID = "1.2.826.0.1.3680043.8.498.1"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("dicom://ORTHANC@pacs.example.org:4242", ("ORTHANC", "pacs.example.org", 4242)),
        ("dicom://MY AE@10.0.0.5:104/", ("MY AE", "10.0.0.5", 104)),
        ("DICOM://A@[::1]:11112", ("A", "::1", 11112)),
    ],
)
def test_dimse_address(url, expected):
    address = parse_dimse_url(url)
    assert (address.ae_title, address.host, address.port) == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("dicom://pacs:4242", "expected dicom://<AE title>@<host>:<port>"),
        ("dicom://ORTHANC@pacs", "expected dicom://<AE title>@<host>:<port>"),
        ("dicom://A_TITLE_LONGER_THAN_16@pacs:104", "expected dicom://"),
        ("dicom://A@pacs:70000", "port 70000 is not in 1..65535"),
    ],
)
def test_bad_dimse_address(url, message):
    with pytest.raises(ValueError, match=message):
        parse_dimse_url(url)


def test_send_to_picks_the_protocol():
    assert isinstance(destination("dicom://PACS@127.0.0.1:104"), DimseServer)
    assert destination("http://127.0.0.1:8042/dicom-web/").root == "http://127.0.0.1:8042/dicom-web"


def test_dimse_peer_down_is_one_line():
    with pytest.raises(DimseError, match="did not answer while checking") as error:
        DimseServer(f"dicom://NOBODY@127.0.0.1:{free_port()}", timeout_s=5).check_access("checking")
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("rules", "modality", "description", "rejected"),
    [
        (SeriesRules(), "CT", "Thorax B40f", None),
        (SeriesRules(), "SEG", "lung", "modality SEG is not one of CT"),
        (SeriesRules(), None, None, None),  # the listing did not say: the files decide
        (SeriesRules(description_pattern="B40f"), "CT", "Thorax B70f", "SeriesDescription does not match"),
        (SeriesRules(description_pattern="B40f"), "CT", None, None),
        (SeriesRules(modalities=None), "MR", "", None),
    ],
)
def test_listing_rules(rules, modality, description, rejected):
    reason = rules.listing_rejection(modality, description)
    assert reason == rejected if rejected is None else rejected in reason


@pytest.mark.parametrize(
    ("value", "expected"), [(None, None), ("", None), ("20261204", "20261204"), ("today", "today"), ("Today", "today")]
)
def test_watch_since(value, expected):
    assert check_study_date(value) == expected


def test_today_is_the_first_day_of_the_state_folder(tmp_path):
    with NodeState(tmp_path / "state") as state:
        (tmp_path / "state" / "watch_since").write_text("20261101\n")  # a watcher first ran then
        assert first_day(state) == "20261101"
    with NodeState(tmp_path / "new") as state:
        today = first_day(state)
        assert today == time.strftime("%Y%m%d") and (tmp_path / "new" / "watch_since").read_text() == today + "\n"
        assert window_start(today) == today  # a new watcher lists from today
        week_ago = time.strftime("%Y%m%d", time.localtime(time.time() - 7 * 86400))
        assert window_start("20000101") == week_ago  # one that has run for years: the last week
        (tmp_path / "new" / "watch_since").write_text("\n")
        with pytest.raises(ValueError, match="holds '', not a date YYYYMMDD"):
            first_day(state)


@pytest.mark.parametrize("value", ["2026-12-04", "20261340", "yesterday"])
def test_bad_watch_since(value):
    with pytest.raises(ValueError, match="is not a date YYYYMMDD"):
        check_study_date(value)


def test_state_survives_reopening(tmp_path):
    with NodeState(tmp_path / "state") as state:
        record = state.put(SeriesRecord(UID, "1.2.3", source="http://pacs/dicom-web"), status="segmented")
        assert record.updated
    assert (tmp_path / "state").stat().st_mode & 0o777 == 0o700
    with NodeState(tmp_path / "state") as state:
        again = state.get(UID)
        assert again == record and not again.done
        state.put(again, status="sent", sent_to="http://pacs/dicom-web")
        assert state.get(UID).done and [r.series_uid for r in state.with_status("sent")] == [UID]
        assert state.get("1.2.3.4") is None


def test_one_node_per_state_folder(tmp_path):
    with NodeState(tmp_path / "state"), pytest.raises(RuntimeError, match="another node uses the state folder"):
        NodeState(tmp_path / "state").__enter__()


def test_state_refuses_unknown_status(tmp_path):
    with NodeState(tmp_path / "state") as state, pytest.raises(ValueError, match="unknown series status 'maybe'"):
        state.put(SeriesRecord(UID, "1.2.3"), status="maybe")


def test_damaged_record_names_its_file(tmp_path):
    with NodeState(tmp_path / "state") as state:
        path = tmp_path / "state" / "series" / record_name(UID)
        path.write_text("{not json")
        with pytest.raises(ValueError, match=f"{path} is not a series record"):
            state.get(UID)


@pytest.mark.parametrize("uid", ["../../etc/passwd", "1.2.3/..", "x" * 200])
def test_odd_uid_cannot_name_a_path(uid, tmp_path):
    name = record_name(uid)
    assert "/" not in name and ".." not in name and len(name) < 60
    with NodeState(tmp_path / "state") as state:
        state.put(SeriesRecord(uid, "1.2"), status="skipped")
        assert json.loads((tmp_path / "state" / "series" / name).read_text())["series_uid"] == uid


# ------------------------------------------------------------------------ what a crash leaves, with the real model
@pytest.fixture
def demo_series(tmp_path) -> tuple[str, str, Path]:
    """One series of the demo study in a folder of its own: (study UID, series UID, folder)."""
    import pydicom

    from pipeline.demo.study import write_demo_study

    write_demo_study(tmp_path / "study", size=64, num_slices=8, seed=5)
    headers = {p: pydicom.dcmread(p, stop_before_pixels=True) for p in sorted((tmp_path / "study").rglob("*.dcm"))}
    axial = next(h.SeriesInstanceUID for h in headers.values() if "LOCALIZER" not in h.ImageType)
    folder = tmp_path / "series"
    folder.mkdir()
    for path, header in headers.items():
        if header.SeriesInstanceUID == axial:
            shutil.copy(path, folder / path.name)
    return str(headers[path].StudyInstanceUID), str(axial), folder


@pytest.mark.parametrize(
    ("attempts", "status", "reason"),
    [
        (1, "written", ""),  # the node was stopped while the model ran: segmented again
        (2, "failed", "segmenting it stopped the node 2 times"),  # killed twice by this series: not tried again
    ],
)
def test_series_left_segmenting(attempts, status, reason, tmp_path, demo_series, bundle_workflow):
    from pipeline.pacs.node import SeriesNode

    study_uid, series_uid, folder = demo_series
    workflow = bundle_workflow("inference", checkpoint=str(FIXTURE / "model.pt"), **SMALL_UNET)
    workflow.initialize()
    runner = workflow.parser.get_parsed_content("runner")
    with NodeState(tmp_path / "state") as state:
        state.put(SeriesRecord(series_uid, study_uid, output=series_uid), status="segmenting", attempts=attempts)
        node = SeriesNode(runner, tmp_path / "out", state, target=None)
        assert not node.taken(series_uid)
        record = node.segment(folder, study_uid, series_uid, "dicom://CT1")
        assert (record.status, record.instances) == (status, 8) and reason in record.reason
        assert state.get(series_uid) == record and node.taken(series_uid)
    assert (tmp_path / "out" / series_uid / "summary.json").is_file() == (status == "written")


def test_series_left_segmented_is_finished_at_the_next_start(tmp_path, demo_series, bundle_workflow):
    """A record left ``segmented`` (stopped before sending) is finished at the next start from the written files,
    without the model (here with no ``send_to``: ``written``; ``test_node_orthanc.py`` sends to a real server)."""
    from pipeline.pacs.node import SeriesNode

    study_uid, series_uid, folder = demo_series
    workflow = bundle_workflow("inference", checkpoint=str(FIXTURE / "model.pt"), **SMALL_UNET)
    workflow.initialize()
    runner = workflow.parser.get_parsed_content("runner")
    with NodeState(tmp_path / "state") as state:
        SeriesNode(runner, tmp_path / "out", state, target=None).segment(folder, study_uid, series_uid, "x")
        state.put(state.get(series_uid), status="segmented")  # as if stopped before the send
        reports = {p: p.stat().st_mtime_ns for p in (tmp_path / "out").rglob("report.json")}
        node = SeriesNode(runner.retargeted("/nonexistent", tmp_path / "elsewhere"), tmp_path / "out", state, None)
        node.send_pending()
        assert state.get(series_uid).status == "written"
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "out").rglob("report.json")} == reports
