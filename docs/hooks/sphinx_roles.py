"""MkDocs hook: show the Sphinx roles of the package's docstrings as plain code in the API reference.

The docstrings follow MONAI's style, which cross-references with Sphinx roles (``:class:`Segmenter```,
``:func:`~pipeline.io.load_series_volume```). Markdown renders the role's name as text before the code; this hook
drops it, and a leading ``~`` keeps only the last dotted name, as Sphinx shows it.
"""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(r":(?:attr|class|data|exc|func|meth|mod|obj):<code>(~?)([^<]*)</code>")


def _plain(match: re.Match[str]) -> str:
    tilde, name = match.groups()
    return f"<code>{name.rsplit('.', 1)[-1] if tilde else name}</code>"


def on_page_content(html: str, page: Any, config: Any, files: Any) -> str:
    """Drop the role names from one rendered page."""
    return _ROLE.sub(_plain, html)
