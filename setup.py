"""The wheel ships the repository's bundles as package data: ``bundles/`` becomes ``pipeline/bundles/``.

Everything else about the distribution is in ``pyproject.toml``; this file only adds what it cannot say, the packages
found in ``bundles/`` (each bundle folder, new ones included) mapped under ``pipeline``. An editable install
(``pip install -e .``) reads the clone's ``bundles/`` instead (``pipeline.bundle.BUNDLES_DIR``).
"""

from pathlib import Path

from setuptools import find_packages, setup

BUNDLES = sorted(p.name for p in Path("bundles").iterdir() if p.is_dir() and not p.name.startswith((".", "_")))

setup(
    packages=[
        *find_packages(include=["pipeline", "pipeline.*"]),
        "pipeline.bundles",
        *(f"pipeline.bundles.{name}" for name in BUNDLES),
    ],
    package_dir={"pipeline.bundles": "bundles"},
    package_data={"pipeline.bundles": ["*.yaml", "*.md"], **{f"pipeline.bundles.{name}": ["*"] for name in BUNDLES}},
    exclude_package_data={"": ["__pycache__/*", "*.pyc"]},
)
