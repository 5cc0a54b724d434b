"""Write the synthetic chest-CT demo dataset (see datasets/README.md).

Optional: the bundles' default command generates ``datasets/demo_ct`` on first use. Run from the repository root::

    python datasets/make_demo.py --out datasets/demo_ct --num_cases 160 --size 256 --seed 0
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

try:
    from pipeline.data.demo import write_demo_dataset
except ImportError:  # not installed with ``pip install -e .``: use the checkout this script lives in
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from pipeline.data.demo import write_demo_dataset


def main(argv: list[str] | None = None) -> Path:
    """Parse the command line, write the dataset and print where it went.

    Args:
        argv: command-line arguments without the program name; ``None`` reads ``sys.argv``.

    Returns:
        The dataset folder.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("datasets/demo_ct"), help="output folder")
    parser.add_argument("--num_cases", type=int, default=160, help="number of slices")
    parser.add_argument("--size", type=int, default=256, help="slice height and width in pixels (at least 64)")
    parser.add_argument("--val_fraction", type=float, default=0.2, help="fraction of cases in the val split")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives identical files")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        root = write_demo_dataset(
            args.out, num_cases=args.num_cases, size=args.size, val_fraction=args.val_fraction, seed=args.seed
        )
    except (ValueError, FileExistsError) as e:
        parser.exit(2, f"error: {e}\n")
    print(f"Wrote {args.num_cases} demo cases to {root.resolve()} in {time.perf_counter() - start:.1f} s")
    return root


if __name__ == "__main__":
    main()
