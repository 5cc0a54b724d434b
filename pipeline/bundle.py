"""Helpers for the bundle configs: where the bundles are, and on/off settings given on the command line.

A bundle config's ``bundle_root`` is the folder that holds it. MONAI cannot tell a config where its own file is, so the
generated configs ask :func:`bundle_root`, which finds the bundle beside the package: the ``bundles/`` folder of the
clone that ``pip install -e .`` installed from (or that the working directory is). A bundle copied elsewhere sets
``--bundle_root`` on the command line instead, as any MONAI bundle does.

``python -m monai.bundle`` reads ``--flip_tta false`` as the string ``"false"``, which Python takes as true. The configs
read every on/off setting through :func:`flag`, which accepts what people type and refuses anything else.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["BUNDLES_DIR", "bundle_root", "flag"]

_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")

BUNDLES_DIR = Path(__file__).resolve().parents[1] / "bundles"
"""The repository's ``bundles/`` folder: a sibling of the package folder."""


def bundle_root(name: str) -> str:
    """The folder of the repository's bundle ``name``.

    Args:
        name: the bundle's folder name under ``bundles/``, e.g. ``"cenet"``.

    Returns:
        The absolute path of ``bundles/<name>``, as a string (configs join it with ``+``).

    Raises:
        FileNotFoundError: when the package was not installed from a clone that holds ``bundles/<name>``; the message
            says to pass ``--bundle_root``.
    """
    root = BUNDLES_DIR / name
    if not root.is_dir():
        raise FileNotFoundError(
            f"bundle folder {root} does not exist: the pipeline package was not installed from the repository that "
            f"holds the '{name}' bundle. Pass --bundle_root <folder of the bundle's configs>."
        )
    return str(root)


def flag(value: object, name: str) -> bool:
    """An on/off setting as a bool, whether the config holds ``false`` or the command line gave ``"false"``.

    Args:
        value: a bool, 0 or 1, or a string ``true``/``false``, ``yes``/``no``, ``on``/``off``, ``1``/``0`` (any case).
        name: the setting, for the message.

    Raises:
        ValueError: for any other value, naming the setting and what it got.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError(f"--{name} must be true or false, got {value!r}.")
