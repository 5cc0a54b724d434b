"""A real PACS for the tests: Orthanc with its DICOMweb plugin, started as a plain process on free ports.

Each server gets a generated JSON config, a private storage folder, authentication on (one registered user), and the
DICOMweb plugin at ``/dicom-web/``; it is stopped when its scope ends. Without Orthanc (Debian packages ``orthanc`` and
``orthanc-dicomweb``) the tests skip with the reason, unless ``PIPELINE_REQUIRE_PACS=1`` (set by CI), where they fail.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests" / "data" / "binary_model_964005e"
"""The fixture model the PACS tests segment with: nothing is trained."""
SMALL_UNET = {"network_def#channels": [4, 8, 16, 32, 64]}
"""The fixture model's network, as it was trained (its README)."""

# Debian installs it as /usr/sbin/Orthanc, which is not on every user's PATH
ORTHANC = os.environ.get("PIPELINE_ORTHANC") or shutil.which("Orthanc") or "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = Path(os.environ.get("PIPELINE_ORTHANC_DICOMWEB", "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"))
USER = "pipeline"
PASSWORD = "Pw-7f3c9e21-only-in-netrc"
"""The test user's password: every test that writes files searches them for it."""


@dataclass
class OrthancServer:
    """A running Orthanc: its URLs, its login, and its folder."""

    url: str
    folder: Path
    process: subprocess.Popen
    log: Path
    dicom_port: int

    AE_TITLE = "PIPELINE_TEST"
    """Its DICOM AE title."""

    @property
    def dimse(self) -> str:
        """Its DIMSE address, ``dicom://AE@host:port``."""
        return f"dicom://{self.AE_TITLE}@127.0.0.1:{self.dicom_port}"

    def post(self, path: str, body: object) -> requests.Response:
        """POST on Orthanc's own REST API, as the registered user: a string as it is, anything else as JSON."""
        text = body if isinstance(body, str) else None
        json_body = None if isinstance(body, str) else body
        response = requests.post(f"{self.url}{path}", data=text, json=json_body, auth=(USER, PASSWORD), timeout=120)
        response.raise_for_status()
        return response

    @property
    def dicomweb(self) -> str:
        """The DICOMweb root."""
        return f"{self.url}/dicom-web"

    def get(self, path: str) -> requests.Response:
        """GET on Orthanc's own REST API, as the registered user."""
        response = requests.get(f"{self.url}{path}", auth=(USER, PASSWORD), timeout=30)
        response.raise_for_status()
        return response

    def delete(self, path: str) -> None:
        """DELETE on Orthanc's own REST API, as the registered user."""
        requests.delete(f"{self.url}{path}", auth=(USER, PASSWORD), timeout=30).raise_for_status()

    def stop(self) -> None:
        """Stop Orthanc (SIGTERM, then SIGKILL after 20 s)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def orthanc_missing() -> list[str]:
    """What of Orthanc the PACS tests lack here (nothing when both Debian packages are installed)."""
    missing = []
    if shutil.which(ORTHANC) is None:
        missing.append(f"no Orthanc at {ORTHANC} (Debian package orthanc)")
    if not DICOMWEB_PLUGIN.is_file():
        missing.append(f"no DICOMweb plugin at {DICOMWEB_PLUGIN} (Debian package orthanc-dicomweb)")
    return missing


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_orthanc(folder: Path, lua: str | None = None, extra: dict | None = None) -> OrthancServer:
    """Start Orthanc with a generated config in ``folder``; wait until it answers as the registered user.

    Args:
        folder: its config, storage and log (created).
        lua: a Lua script for it (e.g. a ``ReceivedInstanceFilter`` that refuses some instances), or ``None``.
        extra: more of its configuration, e.g. ``DicomModalities`` (the DIMSE peers it may push to).
    """
    folder.mkdir(parents=True, exist_ok=True)
    http_port, dicom_port = free_port(), free_port()
    config = {
        "Name": "pipeline-tests",
        "StorageDirectory": str(folder / "storage"),
        "IndexDirectory": str(folder / "storage"),
        "HttpPort": http_port,
        "DicomPort": dicom_port,
        "DicomAet": OrthancServer.AE_TITLE,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": True,
        "RegisteredUsers": {USER: PASSWORD},
        "Plugins": [str(DICOMWEB_PLUGIN)],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        "StorageCompression": False,
        "HttpDescribeErrors": True,
        **(extra or {}),
    }
    if lua is not None:
        (folder / "filter.lua").write_text(lua)
        config["LuaScripts"] = [str(folder / "filter.lua")]
    (folder / "orthanc.json").write_text(json.dumps(config, indent=2))
    log = folder / "orthanc.log"
    with log.open("w") as out:
        process = subprocess.Popen([ORTHANC, str(folder / "orthanc.json")], stdout=out, stderr=subprocess.STDOUT)
    server = OrthancServer(f"http://127.0.0.1:{http_port}", folder, process, log, dicom_port)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"Orthanc exited with status {process.returncode}: {log.read_text()[-2000:]}")
        try:
            if requests.get(f"{server.dicomweb}/studies", auth=(USER, PASSWORD), timeout=2).ok:
                return server
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"Orthanc did not answer within 60 s: {log.read_text()[-2000:]}")


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory, skip_unless_installed) -> Iterator[OrthancServer]:
    """An Orthanc for the whole session, with authentication on and DICOMweb at ``/dicom-web/``."""
    skip_unless_installed(orthanc_missing(), "PACS tests", "PIPELINE_REQUIRE_PACS")
    server = start_orthanc(tmp_path_factory.mktemp("orthanc"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def orthanc_factory(tmp_path_factory, skip_unless_installed) -> Iterator[Callable[..., OrthancServer]]:
    """``orthanc_factory(lua=None, extra=None)``: another Orthanc, e.g. one that refuses some instances or knows a
    DIMSE peer; stopped at the end."""
    skip_unless_installed(orthanc_missing(), "PACS tests", "PIPELINE_REQUIRE_PACS")
    started: list[OrthancServer] = []

    def start(lua: str | None = None, extra: dict | None = None) -> OrthancServer:
        started.append(start_orthanc(tmp_path_factory.mktemp("orthanc_extra"), lua, extra))
        return started[-1]

    yield start
    for server in started:
        server.stop()


def write_netrc(path: Path, host: str = "127.0.0.1", password: str = PASSWORD) -> Path:
    """A netrc file with ``USER``'s login for ``host`` (mode 0600, as netrc wants)."""
    path.write_text(f"machine {host}\nlogin {USER}\npassword {password}\n")
    path.chmod(0o600)
    return path


@pytest.fixture(autouse=True)
def private_temp(tmp_path, monkeypatch) -> Path:
    """Each PACS test's temporary folders (the retrieved studies) in a folder of its own, so that a test can check
    that its own are removed while other tests, in other processes, retrieve theirs."""
    folder = tmp_path / "temp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.fixture
def netrc(tmp_path, monkeypatch) -> Path:
    """``NETRC`` names a file with the test user's login for 127.0.0.1; no bearer token is set."""
    monkeypatch.delenv("PIPELINE_DICOMWEB_TOKEN", raising=False)
    path = write_netrc(tmp_path / "netrc")
    monkeypatch.setenv("NETRC", str(path))
    return path


@dataclass
class UploadedStudy:
    """A demo study on disk and in Orthanc."""

    folder: Path
    study_uid: str
    axial_series: list[str]  # the two series the CT model's series rules select
    localizer: str


def upload(server: OrthancServer, folder: Path) -> None:
    """Store every ``.dcm`` under ``folder`` in ``server`` over STOW-RS, as the registered user."""
    from dicomweb_client.api import DICOMwebClient
    from pydicom import dcmread

    session = requests.Session()
    session.auth = (USER, PASSWORD)
    client = DICOMwebClient(server.dicomweb, session=session)
    client.store_instances([dcmread(path) for path in sorted(folder.rglob("*.dcm"))])


def demo_study(folder: Path, server: OrthancServer, seed: int) -> UploadedStudy:
    """:func:`~pipeline.demo.study.write_demo_study` (64 x 64, 8 slices, ``seed``) in ``folder``, uploaded."""
    from pydicom import dcmread

    from pipeline.demo.study import write_demo_study

    write_demo_study(folder, size=64, num_slices=8, seed=seed)
    headers = [dcmread(path, stop_before_pixels=True) for path in sorted(folder.rglob("*.dcm"))]
    series = {h.SeriesInstanceUID: h for h in headers}
    upload(server, folder)
    return UploadedStudy(
        folder,
        headers[0].StudyInstanceUID,
        sorted(uid for uid, h in series.items() if "LOCALIZER" not in h.ImageType),
        next(uid for uid, h in series.items() if "LOCALIZER" in h.ImageType),
    )


@pytest.fixture(scope="session")
def uploaded_demo(tmp_path_factory, orthanc) -> UploadedStudy:
    """The demo study (seed 5, as the fixture model's series) in the session's Orthanc."""
    return demo_study(tmp_path_factory.mktemp("demo") / "study", orthanc, seed=5)


def stored_instances(server: OrthancServer, study_uid: str, modality: str | None = None) -> list[str]:
    """The SOPInstanceUIDs of the instances of a study in ``server`` (of one modality, e.g. ``SEG``)."""
    found = requests.get(
        f"{server.dicomweb}/studies/{study_uid}/instances",
        params={"Modality": modality} if modality else None,
        auth=(USER, PASSWORD),
        timeout=30,
    )
    if found.status_code == 404:
        return []
    found.raise_for_status()
    return [item["00080018"]["Value"][0] for item in found.json() or []]


def assert_secret_absent(secret: str, *places: Path | str) -> None:
    """``secret`` is in no file under the folders (and no text) given: every file is read as bytes."""
    needle = secret.encode()
    for place in places:
        if isinstance(place, Path):
            files = [place] if place.is_file() else [p for p in place.rglob("*") if p.is_file()]
            for path in files:
                assert needle not in path.read_bytes(), f"the password is in {path}"
        else:
            assert secret not in place, "the password is in the command's output"


class FaultyFront:
    """An HTTP front for a real Orthanc that answers the first ``times`` POSTs with ``status`` (no body of the
    request reaches Orthanc), then passes every request through: a server failing as real servers do (a proxy's
    503 while the PACS restarts, a 400 for what it cannot take), since Orthanc cannot be made to.

    Args:
        server: the Orthanc behind it.
        status: the HTTP status of the failures.
        times: how many POSTs fail; ``None`` for every one.
    """

    def __init__(self, server: OrthancServer, status: int, times: int | None) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        front = self
        self.posts = 0
        """The POSTs it was sent (failed and passed)."""

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _pass(self, method: str) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if method == "POST":
                    front.posts += 1
                    if times is None or front.posts <= times:
                        self.send_response(status)
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                answer = requests.request(method, server.url + self.path, headers=headers, data=body, timeout=60)
                self.send_response(answer.status_code)
                self.send_header("Content-Type", answer.headers.get("Content-Type", "application/octet-stream"))
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            def do_GET(self) -> None:
                self._pass("GET")

            def do_POST(self) -> None:
                self._pass("POST")

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.dicomweb = f"http://127.0.0.1:{self._http.server_address[1]}/dicom-web"
        threading.Thread(target=self._http.serve_forever, daemon=True).start()

    def close(self) -> None:
        """Stop answering."""
        self._http.shutdown()
        self._http.server_close()
