"""``pipeline-bundles``: where the installed bundles are, for MONAI's ``--config_file``.

In a clone the bundles are its ``bundles/`` folder; a wheel installs them as package data. Either way this command
names them, so that the README's commands run from any folder::

    pipeline-bundles                  # every bundle and its folder
    pipeline-bundles cenet            # the folder of one, e.g. for
    python -m monai.bundle run training --config_file "$(pipeline-bundles cenet)/train.json"
"""

from __future__ import annotations

import argparse
import sys

from pipeline.bundle import BUNDLES_DIR, repository_bundles

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Print the folder of the bundle named in ``argv`` (or of every bundle); status 1 for a name that is not one."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", nargs="?", help="a bundle (cenet, unet, ...): print its folder only")
    args = parser.parse_args(argv)
    names = repository_bundles()
    if args.name is None:
        width = max((len(name) for name in names), default=0)
        for name in names:
            print(f"{name:<{width}}  {BUNDLES_DIR / name}")
        return 0
    if args.name not in names:
        known = ", ".join(names) or "none"
        print(f"error: no bundle '{args.name}': the installed bundles are {known}", file=sys.stderr)
        return 1
    print(BUNDLES_DIR / args.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
