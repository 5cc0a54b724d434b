"""PACS connections: studies from a DICOMweb server into the bundle's inference, its results back (DICOMweb or DIMSE),
and the node that segments what a PACS has or sends.

========================================  ============================================================================
:mod:`pipeline.pacs.address`              DICOMweb roots and study or series URLs, parsed; credentials in them refused
:mod:`pipeline.pacs.credentials`          a bearer token from the environment, or the netrc login; never as text
:mod:`pipeline.pacs.errors`               one-line messages: the server's answer and what to do
:mod:`pipeline.pacs.dicomweb`             one server: QIDO-RS, WADO-RS, STOW-RS, TLS, retries with backoff
:mod:`pipeline.pacs.dimse`                one DIMSE peer ``dicom://AE@host:port``: C-ECHO, C-STORE (pynetdicom)
:mod:`pipeline.pacs.retrieve`             a study retrieved into a private temporary folder for one run
:mod:`pipeline.pacs.send`                 a run's DICOM results stored, and recorded in ``summary.json``
:mod:`pipeline.pacs.state`                a node's record of each series, in a folder that outlives it
:mod:`pipeline.pacs.node`                 one series segmented, sent and recorded, once
:mod:`pipeline.pacs.run`                  the bundle's inference with a PACS at either end (``run inference``)
:mod:`pipeline.pacs.watch`                polling a DICOMweb server for new series (``run watch``)
:mod:`pipeline.pacs.listen`               a C-STORE SCP for pushed series (``run listen``)
========================================  ============================================================================

The last five import torch (through the inference runner) and are not imported here.
``python -m pipeline.pacs send --output_dir <folder> [--send_to <root>]`` sends what a run did not send.
"""

from pipeline.pacs.address import DicomWebAddress, is_dicomweb_url, parse_root, parse_study_url
from pipeline.pacs.credentials import TOKEN_ENV, Credentials, find_credentials
from pipeline.pacs.dicomweb import DEFAULT_RETRIES, DicomWebServer, RemoteSeries
from pipeline.pacs.dimse import DimseAddress, DimseServer, parse_dimse_url
from pipeline.pacs.errors import DicomWebError, DimseError, PacsError, PartialRetrievalError, StoreRejectedError
from pipeline.pacs.retrieve import Retrieved, retrieve, retrieved_study
from pipeline.pacs.send import SendError, destination, send_results

__all__ = [
    "DEFAULT_RETRIES",
    "TOKEN_ENV",
    "Credentials",
    "DicomWebAddress",
    "DicomWebError",
    "DicomWebServer",
    "DimseAddress",
    "DimseError",
    "DimseServer",
    "PacsError",
    "PartialRetrievalError",
    "RemoteSeries",
    "Retrieved",
    "SendError",
    "StoreRejectedError",
    "destination",
    "find_credentials",
    "is_dicomweb_url",
    "parse_dimse_url",
    "parse_root",
    "parse_study_url",
    "retrieve",
    "retrieved_study",
    "send_results",
]
