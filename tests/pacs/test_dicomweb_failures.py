"""What a user sees when the PACS end fails: one line with the server's answer and what to do, a nonzero exit status,
nothing sent, and no password anywhere. Real failures only: a real Orthanc that refuses a wrong password or knows no
such study, a port where nothing listens, an instance deleted from Orthanc while a series is read."""

from __future__ import annotations

import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pydicom
import pytest
import requests
from orthanc_server import (
    FIXTURE,
    PASSWORD,
    REPO,
    USER,
    FaultyFront,
    assert_secret_absent,
    demo_study,
    free_port,
    stored_instances,
    write_netrc,
)

from pipeline.pacs import (
    DicomWebError,
    DicomWebServer,
    PartialRetrievalError,
    StoreRejectedError,
    find_credentials,
    parse_root,
    parse_study_url,
    retrieved_study,
)

# ------------------------------------------------------------------------------------------------- addresses, table
STUDY_URLS = [
    ("http://h/dicom-web/studies/1.2.3", ("http://h/dicom-web", "1.2.3", None)),
    ("https://h:8443/pacs/dicom-web/studies/1.2.3/series/4.5/", ("https://h:8443/pacs/dicom-web", "1.2.3", "4.5")),
    ("HTTP://h/studies/1.2", ("http://h", "1.2", None)),
]
BAD_URLS = [
    ("http://h/dicom-web/studies/", "not a DICOMweb study or series URL"),
    ("http://h/dicom-web/studies/1.2/instances/3", "not a DICOMweb study or series URL"),
    ("ftp://h/studies/1.2", "not an http:// or https:// URL"),
    ("http://h/studies/1.2?x=1", "no query"),
    (f"http://{USER}:{PASSWORD}@h/studies/1.2", "has a user name or password in it"),
]


@pytest.mark.parametrize(("url", "expected"), STUDY_URLS)
def test_study_url(url, expected):
    address = parse_study_url(url)
    assert (address.root, address.study_uid, address.series_uid) == expected


@pytest.mark.parametrize(("url", "message"), BAD_URLS)
def test_bad_study_url(url, message):
    with pytest.raises(ValueError, match=message) as raised:
        parse_study_url(url)
    assert PASSWORD not in str(raised.value)


def test_credentials_in_send_to_refused():
    with pytest.raises(ValueError, match="credentials never go on the command line") as raised:
        parse_root(f"https://{USER}:{PASSWORD}@pacs/dicom-web")
    assert PASSWORD not in str(raised.value)


def test_credentials_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("NETRC", str(write_netrc(tmp_path / "netrc", host="pacs")))
    monkeypatch.delenv("PIPELINE_DICOMWEB_TOKEN", raising=False)
    assert find_credentials("https://other/dicom-web").auth is None
    netrc = find_credentials("https://pacs/dicom-web")
    assert "netrc entry for pacs" in netrc.source and PASSWORD not in repr(netrc)
    monkeypatch.setenv("PIPELINE_DICOMWEB_TOKEN", "tok-123")
    token = find_credentials("https://pacs/dicom-web")
    assert "PIPELINE_DICOMWEB_TOKEN" in token.source and "tok-123" not in repr(token) + repr(token.auth)


# ---------------------------------------------------------------------------------------------- transport, in-process
def test_server_down_retried_with_backoff(netrc, caplog):
    server = DicomWebServer(f"http://127.0.0.1:{free_port()}/dicom-web", retries=2, backoff_s=0.5)
    tick = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="urllib3"), pytest.raises(DicomWebError) as raised:
        server.check_access()
    assert time.monotonic() - tick >= 1.0  # waits of 0 s and 1 s between the three attempts
    assert len([r for r in caplog.records if "Retrying" in r.getMessage()]) == 2
    assert "did not answer while checking access (connection refused, retried 2 times)" in str(raised.value)


def test_stopped_orthanc_is_down(orthanc_factory, netrc):
    stopped = orthanc_factory()
    server = DicomWebServer(stopped.dicomweb, retries=1, backoff_s=0.1)
    server.check_access()
    stopped.stop()
    with pytest.raises(DicomWebError, match="did not answer"):
        server.check_access()


def test_partial_retrieval(tmp_path, orthanc, netrc):
    """An instance deleted from Orthanc after the series was listed: the run stops, and the private copy is gone."""
    study = demo_study(tmp_path / "study", orthanc, seed=8)
    series = study.axial_series[0]
    server = DicomWebServer(orthanc.dicomweb)
    sop_uids = server.list_instances(study.study_uid, series)
    last = requests.post(f"{orthanc.url}/tools/lookup", data=sop_uids[-1], auth=(USER, PASSWORD), timeout=30).json()
    deleted = []

    def delete_once(response, *args, **kwargs):  # Orthanc really loses the instance, mid-retrieval
        if "/instances/" in response.url and not deleted:
            deleted.append(last[0]["ID"])
            orthanc.delete(f"/instances/{last[0]['ID']}")
        return response

    server.session.hooks["response"].append(delete_once)
    address = parse_study_url(f"{orthanc.dicomweb}/studies/{study.study_uid}/series/{series}")
    before = set(Path(tempfile.gettempdir()).glob("pipeline-dicomweb-*"))
    with pytest.raises(PartialRetrievalError) as raised, retrieved_study(server, address):
        pytest.fail("the retrieval was not refused")
    assert deleted
    message = str(raised.value)
    assert message.startswith(f"partial retrieval of series {series}: 7 of 8 instances retrieved")
    assert "HTTP 404" in message and "\n" not in message
    assert set(Path(tempfile.gettempdir()).glob("pipeline-dicomweb-*")) == before  # the private copy is gone


# ------------------------------------------------------------------------------------------ the bundle command, CLI
def _command(out: Path, *args: str) -> list[str]:
    return [
        sys.executable, "-m", "monai.bundle", "run", "inference",
        "--config_file", str(REPO / "bundles" / "unet" / "inference.json"),
        "--checkpoint", str(FIXTURE / "model.pt"), "--network_def#channels", "[4,8,16,32,64]",
        "--device", "cpu", "--output_dir", str(out), *args,
    ]  # fmt: skip


def _instances(orthanc) -> int:
    return orthanc.get("/statistics").json()["CountInstances"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("wrong password", "answered HTTP 401 Unauthorized while checking --send_to before the model runs: it did "
                           "not accept the netrc entry for 127.0.0.1"),
        ("server down", "did not answer while querying study"),
        ("unknown study", "answered no series while querying study 1.2.3.4: the server has no study 1.2.3.4"),
    ],
)  # fmt: skip
def test_command_fails_clearly(case, expected, tmp_path, orthanc, uploaded_demo, netrc):
    wrong = "not-" + PASSWORD[::-1]
    if case == "wrong password":
        write_netrc(netrc, password=wrong)
    study = "1.2.3.4" if case == "unknown study" else uploaded_demo.study_uid
    root = f"http://127.0.0.1:{free_port()}/dicom-web" if case == "server down" else orthanc.dicomweb
    args = ["--input", f"{root}/studies/{study}"]
    if case != "server down":
        args += ["--send_to", orthanc.dicomweb]
    before = _instances(orthanc)
    work = tmp_path / "work"  # the command's working folder and outputs; the netrc file is beside it
    out = work / "out"
    work.mkdir()
    done = subprocess.run(_command(out, *args), capture_output=True, text=True, timeout=300, cwd=work)
    assert done.returncode == 1, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and expected in errors[0], done.stderr[-3000:]
    assert _instances(orthanc) == before  # nothing sent
    assert not (out / "summary.json").exists()  # the model never ran
    assert (out / "error.log").is_file()  # the traceback, searched too
    for secret in (PASSWORD, wrong):
        assert_secret_absent(secret, done.stdout, done.stderr, work)
    print(errors[0])


# --------------------------------------------------------------------------------- STOW answered with an HTTP error
@pytest.fixture
def new_instances(tmp_path) -> list[Path]:
    """Two CT instances no server has yet."""
    from pipeline.demo.study import write_demo_study

    write_demo_study(tmp_path / "new", size=64, num_slices=2, seed=11)
    return sorted((tmp_path / "new").rglob("*.dcm"))[:2]


@pytest.mark.parametrize(
    ("status", "times", "posts", "error", "message"),
    [
        (503, 2, 3, None, None),  # a 5xx that passes: retried, stored
        (503, None, 4, DicomWebError, "answered HTTP 503 Service Unavailable while storing: the server failed "
                                      "(retried 3 times): try again later"),
        (400, None, 1, StoreRejectedError, "answered HTTP 400 Bad Request while storing: the server refused the "
                                           "request: see its log for why"),  # the files: not retried
    ],
)  # fmt: skip
def test_stow_answered_with_an_error(status, times, posts, error, message, orthanc, netrc, new_instances):
    front = FaultyFront(orthanc, status, times)
    try:
        server = DicomWebServer(front.dicomweb, retries=3, backoff_s=0.05)
        if error is None:
            stored = server.store(new_instances, "storing")
            study = str(pydicom.dcmread(new_instances[0], stop_before_pixels=True).StudyInstanceUID)
            assert set(stored) <= set(stored_instances(orthanc, study)) and len(stored) == 2
        else:
            with pytest.raises(error) as raised:
                server.store(new_instances, "storing")
            assert raised.value.status == status and message in str(raised.value)
            assert "\n" not in str(raised.value)
    finally:
        front.close()
    assert front.posts == posts
