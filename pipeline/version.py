"""The package version: one source, read by ``pyproject.toml``, the model cards and the packaged bundles."""

__version__ = "0.1.0"
