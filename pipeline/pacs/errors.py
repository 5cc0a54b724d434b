"""One-line messages for what goes wrong between the pipeline and a PACS (DICOMweb or DIMSE): the server's answer, then
what to do. The messages name the server by its URL and the credentials by where they came from, never by their text."""

from __future__ import annotations

import re
from http import HTTPStatus

import requests

__all__ = ["DicomWebError", "DimseError", "PacsError", "PartialRetrievalError", "StoreRejectedError", "explain"]


class PacsError(RuntimeError):
    """A request to a PACS failed; the message is one line: what failed, the server's answer, what to do.

    Args:
        message: the line.
        status: the status the server answered (HTTP, or a DIMSE status), or ``None`` when it did not answer.
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class DicomWebError(PacsError):
    """A DICOMweb request failed (``status``: the HTTP status, or ``None`` when the server did not answer)."""


class DimseError(PacsError):
    """A DIMSE association or request failed (``status``: the DIMSE status, or ``None`` when there was none)."""


class PartialRetrievalError(DicomWebError):
    """Fewer instances of a series came back than the server listed."""


class StoreRejectedError(PacsError):
    """The server did not store every instance it was sent (the files, not the server: others may be accepted)."""


_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\")\]]+)")


def _reason(error: Exception) -> str:
    """What a connection error comes down to, e.g. ``connection refused``; no URL, no headers."""
    if isinstance(error, requests.exceptions.SSLError):
        return "its TLS certificate could not be verified"
    if isinstance(error, requests.Timeout):
        return "timed out"
    match = _ERRNO.search(str(error))
    if match:
        return match.group(1).strip().lower()
    for words in ("Connection refused", "Connection reset", "Connection aborted", "Name or service not known"):
        if words.lower() in str(error).lower():
            return words.lower()
    return type(error).__name__


def _status_text(status: int) -> str:
    try:
        return f"HTTP {status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"HTTP {status}"


def explain(
    error: Exception, server: str, doing: str, credentials_source: str, retries: int, not_found: str = ""
) -> DicomWebError:
    """The :class:`DicomWebError` a failed request ends in.

    Args:
        error: what ``requests`` (or dicomweb-client) raised.
        server: the DICOMweb root, for the message.
        doing: what was being done, e.g. ``"querying study 1.2.3"``.
        credentials_source: where the credentials came from (:attr:`Credentials.source`), for 401 and 403.
        retries: how many times transient errors were retried, for the message.
        not_found: what to do on a 404; default: check the URL.
    """
    if isinstance(error, DicomWebError):
        return error
    response = getattr(error, "response", None)
    if response is not None and getattr(response, "status_code", None):
        status = int(response.status_code)
        said = f"{server} answered {_status_text(status)} while {doing}"
        if status == 401:
            todo = (
                f"it did not accept {credentials_source}: put the right login for its host in ~/.netrc (or the file "
                "NETRC names), or set PIPELINE_DICOMWEB_TOKEN"
            )
        elif status == 403:
            todo = f"the account ({credentials_source}) may not do this: ask the PACS administrator for access"
        elif status == 404:
            todo = not_found or "check the UIDs and the DICOMweb root in the URL"
        elif status >= 500:
            todo = f"the server failed (retried {retries} times): try again later, or ask its administrator"
        else:
            todo = "the server refused the request: see its log for why"
        return DicomWebError(f"{said}: {todo}", status)
    if isinstance(error, requests.exceptions.SSLError):
        return DicomWebError(
            f"{server}: {_reason(error)} while {doing}: pass --ca_bundle <PEM file of your CA's certificates> for a "
            "private certificate authority"
        )
    if isinstance(error, requests.RequestException):
        return DicomWebError(
            f"{server} did not answer while {doing} ({_reason(error)}, retried {retries} times): check that the server "
            "runs and the URL is right, then run the command again"
        )
    return DicomWebError(f"{server}: {type(error).__name__} while {doing}: {error}")
