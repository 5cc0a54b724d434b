"""PACS connections: studies from a DICOMweb server into the bundle's inference, and its results back.

========================================  ============================================================================
:mod:`pipeline.pacs.address`              DICOMweb roots and study or series URLs, parsed; credentials in them refused
:mod:`pipeline.pacs.credentials`          a bearer token from the environment, or the netrc login; never as text
:mod:`pipeline.pacs.errors`               one-line messages: the server's answer and what to do
:mod:`pipeline.pacs.dicomweb`             one server: QIDO-RS, WADO-RS, STOW-RS, TLS, retries with backoff
:mod:`pipeline.pacs.retrieve`             a study retrieved into a private temporary folder for one run
:mod:`pipeline.pacs.send`                 a run's DICOM results stored, and recorded in ``summary.json``
:mod:`pipeline.pacs.run`                  the bundle's inference with DICOMweb at either end (imports torch:
                                          not imported here)
========================================  ============================================================================

``python -m pipeline.pacs send --output_dir <folder> [--send_to <root>]`` sends what a run did not send.
"""

from pipeline.pacs.address import DicomWebAddress, is_dicomweb_url, parse_root, parse_study_url
from pipeline.pacs.credentials import TOKEN_ENV, Credentials, find_credentials
from pipeline.pacs.dicomweb import DEFAULT_RETRIES, DicomWebServer, RemoteSeries
from pipeline.pacs.errors import DicomWebError, PartialRetrievalError, StoreRejectedError
from pipeline.pacs.retrieve import Retrieved, retrieve, retrieved_study
from pipeline.pacs.send import SendError, send_results

__all__ = [
    "DEFAULT_RETRIES",
    "TOKEN_ENV",
    "Credentials",
    "DicomWebAddress",
    "DicomWebError",
    "DicomWebServer",
    "PartialRetrievalError",
    "RemoteSeries",
    "Retrieved",
    "SendError",
    "StoreRejectedError",
    "find_credentials",
    "is_dicomweb_url",
    "parse_root",
    "parse_study_url",
    "retrieve",
    "retrieved_study",
    "send_results",
]
