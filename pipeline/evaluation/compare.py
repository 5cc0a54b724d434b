"""Compare bundles on one dataset and split: train, evaluate and write a report folder (``report.md`` and figures).

Run from the repository root (``python -m pipeline.evaluation.compare`` is the same command); arguments after the
comparison's own are passed to every bundle command::

    pipeline-compare --bundles cenet unet --dataset_dir datasets/demo_ct --output_dir reports/demo \\
        --epochs 5 --spatial_size "[192,192]"
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from pipeline.evaluation.comparison_report import write_report
from pipeline.evaluation.comparison_runs import default_variants, run_bundle

BUNDLES = ("cenet", "aspp", "inception_unet", "unet")


def main(argv: list[str] | None = None) -> Path:
    """Parse the command line, run every bundle, write the report and exit non-zero if any run failed.

    Args:
        argv: command-line arguments without the program name; ``None`` reads ``sys.argv``.

    Returns:
        The report's Markdown file.
    """
    parser = argparse.ArgumentParser(
        prog="pipeline-compare",
        allow_abbrev=False,  # --output must not silently become --output_dir: unknown arguments go to the bundles
        description=__doc__.splitlines()[0],
        epilog='Any other --key value arguments (--epochs 10, --spatial_size "[192,192]", --fold 0, --modality ES) '
        "go to every training and evaluation command.",
    )
    parser.add_argument("--bundles", nargs="+", default=list(BUNDLES), help=f"bundles to compare (default {BUNDLES})")
    parser.add_argument("--dataset_dir", default="datasets/demo_ct", help="folder or datalist JSON (default: demo)")
    parser.add_argument("--output_dir", type=Path, required=True, help="report folder; runs go to OUTPUT_DIR/runs")
    parser.add_argument(
        "--variants",
        nargs="+",
        default=list(default_variants()),
        help="evaluation variants: plain, tta (flip TTA), post (largest components + fill holes), tta+post",
    )
    parser.add_argument("--keep_largest", type=int, default=2, help="components kept by post-processing (default 2)")
    parser.add_argument("--num_disagreement_cases", type=int, default=4, help="cases in disagreement.png (default 4)")
    parser.add_argument("--bundles_dir", default="bundles", help="where the bundles are (default bundles)")
    parser.add_argument("--force", action="store_true", help="train and evaluate again even what finished before")
    args, bundle_args = parser.parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")

    known = default_variants(args.keep_largest)
    unknown = [v for v in args.variants if v not in known]
    if unknown or "plain" not in args.variants:
        parser.error(f"--variants takes {sorted(known)} and must include plain; got {args.variants}")
    missing = [b for b in args.bundles if not (Path(args.bundles_dir) / b / "train.json").is_file()]
    if missing:
        parser.error(f"no bundle {missing} under {args.bundles_dir}/ (run from the repository root)")
    variants = {v: known[v] for v in args.variants}
    try:
        results = [
            run_bundle(b, args.dataset_dir, args.output_dir, bundle_args, variants, args.bundles_dir, args.force)
            for b in args.bundles
        ]
    except ValueError as e:
        parser.error(str(e))
    try:
        report = write_report(
            results,
            args.output_dir,
            dataset_dir=args.dataset_dir,
            bundle_args=bundle_args,
            num_disagreement_cases=args.num_disagreement_cases,
        )
    except ValueError as e:
        parser.exit(1, f"error: {e}\n")
    print(f"Report: {report}")
    if any(r.error for r in results):
        sys.exit(1)
    return report


def command() -> int:
    """``pipeline-compare``: :func:`main` with an exit status."""
    main()
    return 0


if __name__ == "__main__":
    main()
