"""The PACS tests' fixtures. They, the real Orthanc they start, and the helpers the tests import live in
``orthanc_server.py``: a module of its own name, since ``from conftest import`` finds whichever of the suite's
``conftest`` modules was imported first."""

from orthanc_server import netrc, orthanc, orthanc_factory, private_temp, uploaded_demo  # noqa: F401 (pytest finds them here)
