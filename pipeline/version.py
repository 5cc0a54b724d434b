"""The package version and distribution name: one source, read by ``pyproject.toml``, the model cards and the packaged
bundles."""

__version__ = "0.1.0"

DISTRIBUTION = "medical-slice-segmentation"
"""The distribution that installs ``pipeline`` (``pyproject.toml``'s ``name``; ``pipeline`` on the package index is
another project)."""
