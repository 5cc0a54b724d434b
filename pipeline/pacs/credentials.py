"""Who the pipeline is to a DICOMweb server: a bearer token from the environment, or a login from netrc.

Credentials never come from the command line and never leave this module as text: the session carries them, and
messages name only where they came from (:attr:`Credentials.source`), e.g. ``"the netrc entry for pacs.example.org
in ~/.netrc"``. Precedence:

1. :data:`TOKEN_ENV` (``PIPELINE_DICOMWEB_TOKEN``) set and not empty: ``Authorization: Bearer <token>``.
2. The netrc entry for the server's host in the file ``NETRC`` names, else ``~/.netrc`` (what ``requests`` reads):
   HTTP basic authentication.
3. Neither: no credentials (a server that wants some answers 401, and the message says how to give them).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests
from requests.auth import AuthBase, HTTPBasicAuth
from requests.utils import get_netrc_auth

__all__ = ["TOKEN_ENV", "Credentials", "find_credentials"]

TOKEN_ENV = "PIPELINE_DICOMWEB_TOKEN"
"""The environment variable that holds a bearer token for the DICOMweb server."""


class _Bearer(AuthBase):
    """``Authorization: Bearer <token>``; its repr shows no token."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request

    def __repr__(self) -> str:
        return "<bearer token>"


@dataclass(frozen=True, repr=False)
class Credentials:
    """How to authenticate to one server, and where that came from.

    Args:
        auth: the ``requests`` authentication, or ``None`` for none.
        source: where the credentials came from, for messages; never the credentials themselves.
    """

    auth: AuthBase | None
    source: str

    def __repr__(self) -> str:
        return f"Credentials({self.source})"


def _netrc_file() -> str:
    return os.environ.get("NETRC") or "~/.netrc"


def find_credentials(url: str) -> Credentials:
    """The credentials for the server of ``url``: :data:`TOKEN_ENV`, else its netrc entry, else none."""
    token = os.environ.get(TOKEN_ENV, "").strip()
    if token:
        return Credentials(_Bearer(token), f"the bearer token in {TOKEN_ENV}")
    host = urlsplit(url).hostname or ""
    login = get_netrc_auth(url)
    if login is not None:
        return Credentials(HTTPBasicAuth(*login), f"the netrc entry for {host} in {_netrc_file()}")
    return Credentials(None, f"no credentials (no {TOKEN_ENV}, no netrc entry for {host} in {_netrc_file()})")
