"""The pipeline as a DICOM node beside a real Orthanc: the watcher polls its DICOMweb side, the listener receives what
it pushes over DIMSE, and the results arrive back in it. Each test starts an Orthanc of its own, since the watcher
lists every series on the server.

The fixture model segments (nothing is trained); the watcher and the listener are the bundle config's own objects
(``watcher``, ``listener``), run on a thread and stopped through their ``stop`` event, and once as the bundle command,
stopped with SIGTERM.
"""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pydicom
import pytest
from orthanc_server import (
    FIXTURE,
    PASSWORD,
    REPO,
    SMALL_UNET,
    assert_secret_absent,
    demo_study,
    free_port,
    stored_instances,
    write_netrc,
)

from pipeline.pacs.errors import DicomWebError
from pipeline.pacs.state import NodeState

REFUSE_RESULTS = """
function ReceivedInstanceFilter(dicom, origin, info)
  return dicom.Modality ~= 'SEG' and dicom.Modality ~= 'SR'
end
"""


def _node(bundle_workflow, part: str, out: Path, **overrides):
    """The bundle config's ``watcher`` or ``listener``, with the fixture model."""
    workflow = bundle_workflow(
        "inference", output_dir=str(out), checkpoint=str(FIXTURE / "model.pt"), complete_after_s=1, **SMALL_UNET,
        **overrides,
    )  # fmt: skip
    workflow.initialize()
    return workflow.parser.get_parsed_content(part)


@contextmanager
def _running(node) -> Iterator[dict]:
    """Run ``node.run()`` on a thread; stop it when the block ends. The dict gets ``taken`` (or ``error``)."""
    result: dict = {}

    def run() -> None:
        try:
            result["taken"] = node.run()
        except Exception as e:
            result["error"] = e

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield result
    finally:
        node.stop.set()
        thread.join(180)
    assert not thread.is_alive()
    assert "error" not in result, result.get("error")


def _wait_for(condition: Callable[[], bool], what: str, result: dict, timeout_s: float = 240) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert "error" not in result, result["error"]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _statuses(state_dir: Path) -> dict[str, str]:
    return {record.series_uid: record.status for record in NodeState(state_dir).records()}


def _all_done(state_dir: Path, study) -> bool:
    statuses = _statuses(state_dir)
    wanted = {*study.axial_series, study.localizer}
    return set(statuses) == wanted and all(status in ("sent", "skipped") for status in statuses.values())


def _referenced_series(server, study, modality: str) -> list[str]:
    """The segmented series that each SEG (or SR) of ``study`` in ``server`` references."""
    found = []
    for sop_uid in stored_instances(server, study.study_uid, modality):
        instance_id = server.post("/tools/lookup", sop_uid).json()[0]["ID"]
        ds = pydicom.dcmread(io.BytesIO(server.get(f"/instances/{instance_id}/file").content))
        if modality == "SEG":
            found.append(str(ds.ReferencedSeriesSequence[0].SeriesInstanceUID))
        else:  # the SR's evidence: its SEG's series and the source series
            evidence = ds.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence
            found.extend(
                str(item.SeriesInstanceUID) for item in evidence if item.SeriesInstanceUID in study.axial_series
            )
    return sorted(found)


@pytest.mark.slow
def test_watch_segments_each_new_series_once(tmp_path, orthanc_factory, bundle_workflow, netrc, caplog):
    caplog.set_level("INFO", logger="pipeline.pacs")
    server = orthanc_factory()
    out = tmp_path / "out"
    settings = {"input": server.dicomweb, "send_to": server.dicomweb, "poll_s": 0.5, "watch_since": "20000101"}
    watcher = _node(bundle_workflow, "watcher", out, **settings)
    with _running(watcher) as result:
        time.sleep(1)  # it lists an empty server first
        study = demo_study(tmp_path / "study", server, seed=5)  # arrives while it runs
        _wait_for(lambda: _all_done(out / "node-state", study), "the study's three series", result)
        time.sleep(2)  # more polls: its own SEG and SR series are listed and left alone
    assert result["taken"] == 3
    statuses = _statuses(out / "node-state")
    assert statuses == {**dict.fromkeys(study.axial_series, "sent"), study.localizer: "skipped"}
    assert _referenced_series(server, study, "SEG") == _referenced_series(server, study, "SR") == study.axial_series
    for uid in study.axial_series:
        summary = json.loads((out / uid / "summary.json").read_text())
        assert summary["pacs"]["send_to"] == server.dicomweb and not summary["pacs"]["not_sent"]
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("series ")]
    for uid in study.axial_series:  # one line per series: received, outcome, where it went
        (line,) = [line for line in lines if line.startswith(f"series {uid}: 8 instances from {server.dicomweb}")]
        assert f"sent to {server.dicomweb}" in line and " ml" in line
    assert any("not selected: modality SEG is not one of CT" in line for line in caplog.messages)

    before = stored_instances(server, study.study_uid)
    restarted = _node(bundle_workflow, "watcher", out, **settings)
    caplog.clear()
    with _running(restarted) as again:
        time.sleep(3)  # several polls
    assert again["taken"] == 0
    assert not [m for m in caplog.messages if m.startswith("series ") and "sent to" in m]  # nothing sent again
    assert stored_instances(server, study.study_uid) == before  # nothing sent twice
    assert _statuses(out / "node-state") == statuses
    assert_secret_absent(PASSWORD, out, caplog.text)

    first = _node(bundle_workflow, "watcher", tmp_path / "first", **{**settings, "watch_since": "today"})
    with _running(first) as archive:
        time.sleep(2)
    assert archive["taken"] == 0  # a new watcher leaves the study of 2000 alone: it is the archive


@pytest.mark.slow
def test_watch_sends_later_what_was_refused(tmp_path, orthanc_factory, bundle_workflow, netrc):
    """Results a server refused stay written; the next start sends them without running the model again."""
    source, refusing = orthanc_factory(), orthanc_factory(lua=REFUSE_RESULTS)
    study = demo_study(tmp_path / "study", source, seed=5)
    out = tmp_path / "out"
    settings = {"input": source.dicomweb, "poll_s": 0.5, "watch_since": "19000101"}
    watcher = _node(bundle_workflow, "watcher", out, send_to=refusing.dicomweb, **settings)
    with _running(watcher) as result:
        _wait_for(lambda: list(_statuses(out / "node-state").values()).count("not_sent") == 2, "refused", result)
    reports = {p: p.stat().st_mtime_ns for p in out.rglob("report.json")}
    assert len(reports) == 2 and not stored_instances(refusing, study.study_uid)

    again = _node(bundle_workflow, "watcher", out, send_to=source.dicomweb, **settings)
    with _running(again) as result:
        _wait_for(lambda: list(_statuses(out / "node-state").values()).count("sent") == 2, "sent", result)
    assert result["taken"] == 0  # the model did not run again
    assert {p: p.stat().st_mtime_ns for p in out.rglob("report.json")} == reports
    assert len(stored_instances(source, study.study_uid, "SEG")) == 2


def test_watch_wrong_password_stops_at_once(tmp_path, orthanc, bundle_workflow, netrc):
    write_netrc(netrc, password="not-the-password")
    watcher = _node(bundle_workflow, "watcher", tmp_path / "out", input=orthanc.dicomweb)
    with pytest.raises(DicomWebError, match="answered HTTP 401 Unauthorized while checking --input before watching"):
        watcher.run()
    assert not (tmp_path / "out" / "node-state").exists()


@pytest.mark.slow
def test_listener_segments_what_orthanc_pushes(tmp_path, orthanc_factory, bundle_workflow, netrc, caplog):
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification

    caplog.set_level("INFO", logger="pipeline.pacs")
    port = free_port()
    server = orthanc_factory(extra={"DicomModalities": {"pipeline": ["PIPELINE", "127.0.0.1", port]}})
    study = demo_study(tmp_path / "study", server, seed=5)
    out = tmp_path / "out"
    listener = _node(
        bundle_workflow, "listener", out, listen_port=port, listen_host="127.0.0.1",
        calling_aets=[server.AE_TITLE], send_to=server.dimse,
    )  # fmt: skip
    with _running(listener) as result:
        assert listener.ready.wait(60)
        intruder = AE(ae_title="INTRUDER")
        intruder.add_requested_context(Verification)
        association = intruder.associate("127.0.0.1", port, ae_title="PIPELINE")
        assert association.is_rejected  # not one of calling_aets
        assert server.post("/modalities/pipeline/echo", {}).ok  # Orthanc's C-ECHO is accepted
        study_id = server.post("/tools/lookup", study.study_uid).json()[0]["ID"]
        server.post("/modalities/pipeline/store", {"Resources": [study_id], "Synchronous": True})
        _wait_for(lambda: _all_done(out / "node-state", study), "the study's three series", result)
        before = stored_instances(server, study.study_uid)
        series_id = server.post("/tools/lookup", study.axial_series[0]).json()[0]["ID"]
        server.post("/modalities/pipeline/store", {"Resources": [series_id], "Synchronous": True})  # pushed again
        time.sleep(2)
    assert stored_instances(server, study.study_uid) == before  # not segmented, not sent again
    assert f"series {study.axial_series[0]}: an instance arrived after the series was taken as complete" in caplog.text
    assert _statuses(out / "node-state") == {**dict.fromkeys(study.axial_series, "sent"), study.localizer: "skipped"}
    assert _referenced_series(server, study, "SEG") == _referenced_series(server, study, "SR") == study.axial_series
    assert not any((out / "node-state" / "incoming").iterdir())  # received files removed once segmented
    lines = [m for m in caplog.messages if m.startswith("series ")]
    for uid in study.axial_series:
        (line,) = [m for m in lines if m.startswith(f"series {uid}: 8 instances from dicom://{server.AE_TITLE}")]
        assert f"sent to {server.dimse}" in line
    assert_secret_absent(PASSWORD, out, caplog.text)


def _node_command(run_id: str, out: Path, *args: str) -> subprocess.Popen:
    """``python -m monai.bundle run <run_id>`` of the unet bundle with the fixture model, started."""
    command = [
        sys.executable, "-m", "monai.bundle", "run", run_id,
        "--config_file", str(REPO / "bundles" / "unet" / "inference.json"),
        "--checkpoint", str(FIXTURE / "model.pt"), "--network_def#channels", "[4,8,16,32,64]",
        "--device", "cpu", "--output_dir", str(out), *args,
    ]  # fmt: skip
    return subprocess.Popen(command, cwd=out.parent, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _stop_with_sigterm(process: subprocess.Popen, started: Callable[[str], bool]) -> str:
    """Wait until ``started(its output so far)`` (at most 180 s), send SIGTERM, and return the command's output once
    it ended. The output is read as it comes, so that ``started`` can wait for the command's own words."""
    lines: list[str] = []

    def read() -> None:
        for line in process.stdout:
            lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 180
        while not started("".join(lines)):
            assert process.poll() is None and time.monotonic() < deadline, "".join(lines)[-3000:]
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=120)
        reader.join(timeout=30)
        return "".join(lines)
    finally:
        if process.poll() is None:
            process.kill()


@pytest.mark.slow
def test_listen_command_stops_cleanly_on_sigterm(tmp_path):
    from pydicom.uid import JPEGLSLossless
    from pynetdicom import AE
    from pynetdicom.sop_class import CTImageStorage, Verification

    port = free_port()
    process = _node_command("listen", tmp_path / "out", "--listen_port", str(port), "--listen_host", "127.0.0.1")
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(Verification)
    ae.add_requested_context(CTImageStorage, [JPEGLSLossless])  # a compressed push is taken as it is

    def echoed(output: str) -> bool:
        # only once it says so: another test's server may have been given the same free port before it bound it
        if f"listening as PIPELINE on 127.0.0.1:{port}" not in output:
            return False
        association = ae.associate("127.0.0.1", port, ae_title="PIPELINE")
        if not association.is_established:
            return False
        assert association.send_c_echo().Status == 0x0000
        (ct,) = [c for c in association.accepted_contexts if c.abstract_syntax == CTImageStorage]
        assert ct.transfer_syntax == [JPEGLSLossless]
        association.release()
        return True

    output = _stop_with_sigterm(process, echoed)
    assert process.returncode == 0, output[-3000:]
    assert "listening as PIPELINE on 127.0.0.1" in output and "stopped (Ctrl-C or SIGTERM)" in output, output[-3000:]
    assert "Traceback" not in output


@pytest.mark.slow
def test_watch_command_stops_cleanly_on_sigterm(tmp_path, orthanc, netrc):
    out = tmp_path / "out"
    process = _node_command("watch", out, "--input", orthanc.dicomweb, "--poll_s", "0.5")

    def watched_a_while(output: str) -> bool:  # it has started watching, then polled a few times
        if not (out / "node-state" / "watch_since").is_file():
            return False
        time.sleep(1.5)
        return True

    output = _stop_with_sigterm(process, watched_a_while)
    assert process.returncode == 0, output[-3000:]
    assert f"watching {orthanc.dicomweb} every 0.5 s" in output and "stopped (Ctrl-C or SIGTERM)" in output, output
    assert "Traceback" not in output
    assert_secret_absent(PASSWORD, output, out)
