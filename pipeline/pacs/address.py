"""DICOMweb addresses: a server's root, and a study or series under it, parsed from what a user types.

``http(s)://host[:port]/<root>/studies/<StudyInstanceUID>[/series/<SeriesInstanceUID>]`` names a study (or one series
of it) on the server whose DICOMweb root is ``http(s)://host[:port]/<root>``. A URL with a user name or password in it
is refused without being repeated: credentials never come from the command line (:mod:`pipeline.pacs.credentials`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

__all__ = ["DicomWebAddress", "is_dicomweb_url", "parse_root", "parse_study_url"]

_UID = r"[0-9]+(?:\.[0-9]+)*"
_STUDY_PATH = re.compile(rf"^(?P<root>.*?)/studies/(?P<study>{_UID})(?:/series/(?P<series>{_UID}))?/?$")


@dataclass(frozen=True)
class DicomWebAddress:
    """A study, or one series of it, on a DICOMweb server.

    Args:
        root: the server's DICOMweb root, e.g. ``https://pacs.example.org/dicom-web`` (no trailing slash).
        study_uid: the StudyInstanceUID.
        series_uid: the SeriesInstanceUID, or ``None`` for the whole study.
    """

    root: str
    study_uid: str
    series_uid: str | None = None

    @property
    def url(self) -> str:
        """The address as a URL (it holds no credentials: those are refused when parsed)."""
        url = f"{self.root}/studies/{self.study_uid}"
        return url if self.series_uid is None else f"{url}/series/{self.series_uid}"

    def __str__(self) -> str:
        return self.url


def is_dicomweb_url(value: object) -> bool:
    """Whether ``value`` is an ``http://`` or ``https://`` URL (and so not a file path)."""
    return isinstance(value, str) and value.strip().lower().startswith(("http://", "https://"))


def _split(url: str, what: str) -> tuple[str, str, str]:
    """``(scheme, netloc, path)`` of a URL; a URL with credentials, a query or no host is refused."""
    parts = urlsplit(url.strip())
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{what} is not an http:// or https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        raise ValueError(
            f"{what} has a user name or password in it (not repeated here): credentials never go on the command "
            "line; put them in ~/.netrc (or the file NETRC names) or set PIPELINE_DICOMWEB_TOKEN, and pass the URL "
            "without them"
        )
    if parts.query or parts.fragment:
        raise ValueError(f"{what} {urlunsplit((*parts[:3], '', ''))}: a DICOMweb URL takes no query or fragment")
    return parts.scheme.lower(), parts.netloc, parts.path


def parse_root(url: str, what: str = "--send_to") -> str:
    """A DICOMweb root as given (``https://host/dicom-web``), without a trailing slash.

    Raises:
        ValueError: not an http(s) URL, or one with credentials, a query or a fragment in it.
    """
    scheme, netloc, path = _split(url, what)
    return urlunsplit((scheme, netloc, path.rstrip("/"), "", ""))


def parse_study_url(url: str, what: str = "--input") -> DicomWebAddress:
    """The study (or series) a DICOMweb URL names.

    Args:
        url: ``http(s)://host/<root>/studies/<StudyInstanceUID>[/series/<SeriesInstanceUID>]``.
        what: how messages name the URL's source, e.g. ``"--input"``.

    Raises:
        ValueError: not such a URL (the message shows the expected form), or one with credentials in it.
    """
    scheme, netloc, path = _split(url, what)
    match = _STUDY_PATH.match(path)
    if match is None:
        raise ValueError(
            f"{what} {urlunsplit((scheme, netloc, path, '', ''))} is not a DICOMweb study or series URL: expected "
            "http(s)://host/<dicom-web root>/studies/<StudyInstanceUID>[/series/<SeriesInstanceUID>]"
        )
    root = urlunsplit((scheme, netloc, match["root"].rstrip("/"), "", ""))
    return DicomWebAddress(root, match["study"], match["series"])
