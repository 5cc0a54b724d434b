"""Where the repository's bundles are, for configs that run from any working directory.

A bundle config's ``bundle_root`` is the folder that holds it. MONAI cannot tell a config where its own file is, so the
generated configs ask :func:`bundle_root`, which finds the bundle beside the package: the ``bundles/`` folder of the
clone that ``pip install -e .`` installed from (or that the working directory is). A bundle copied elsewhere sets
``--bundle_root`` on the command line instead, as any MONAI bundle does.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["BUNDLES_DIR", "bundle_root"]

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
