"""Benchmark (not a test): end-to-end DICOM study inference against model-forward-only time, side by side.

End to end = ``InferenceRunner.run()`` of a bundle's ``inference.json``: scan and select series, read and sort the
slices, preprocess, forward, invert the resize, threshold, clean up in 3D, write DICOM SEG, NIfTI, overlay montage
and JSON reports; timed with the stages overlapped (``overlap_io``, the default) and one after the other.
Model only = the same network's forward pass (through the same inferer) over the same slices, already preprocessed
and in memory, in the same batches. All three are timed in one process, alternating, after one warm-up run, so that
machine noise hits them alike. Non-model milliseconds per slice = (end to end - model only) / slices.

Prints one JSON object (the last line of standard output). Run from anywhere::

    python tests/benchmarks/bench_study_inference.py --bundle cenet --input ../shared/data/dicom \
        --checkpoint outputs/cenet/latest/models/model.pt --spatial_size 256 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
from monai.bundle import ConfigParser

from pipeline.inference import find_inputs
from pipeline.io.dicom_volume import load_series_volume

REPO = Path(__file__).resolve().parents[2]


def _parser(args: argparse.Namespace, output_dir: str) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config(REPO / "bundles" / args.bundle / "inference.json")
    parser.read_meta(REPO / "bundles" / args.bundle / "metadata.json")
    overrides = {"input": args.input, "output_dir": output_dir, "device": args.device}
    if args.checkpoint:
        overrides["checkpoint"] = args.checkpoint
    if args.spatial_size:
        overrides["spatial_size"] = [args.spatial_size, args.spatial_size]
    parser.update(overrides)
    return parser


def _prepared(predictor, slice_hu) -> torch.Tensor:
    return predictor.preprocessing({"image": torch.from_numpy(slice_hu)[None]})["image"]


def _model_only(parser: ConfigParser, args: argparse.Namespace) -> tuple[float, int]:
    """Seconds for the network forward over every selected slice (preprocessed beforehand), and the slice count."""
    predictor = parser.get_parsed_content("predictor")
    inputs = find_inputs(args.input, parser.get_parsed_content("series_rules"))
    batches = []
    for series in inputs.series:
        volume = load_series_volume(series)
        images = torch.stack([_prepared(predictor, s) for s in volume.array])
        batches.extend(images[i : i + predictor.batch_size] for i in range(0, len(images), predictor.batch_size))
    predictor.reset_timers()
    with torch.inference_mode():
        for batch in batches:
            predictor.forward_batch(batch)
    return predictor.forward_seconds, sum(len(b) for b in batches)


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--bundle", default="cenet")
    cli.add_argument("--input", required=True, help="DICOM study folder (or any inference input)")
    cli.add_argument("--checkpoint", default=None)
    cli.add_argument("--spatial_size", type=int, default=None)
    cli.add_argument("--device", default="cuda:0" if torch.cuda.is_available() else "cpu")
    cli.add_argument("--repeats", type=int, default=3)
    args = cli.parse_args()

    with tempfile.TemporaryDirectory() as out:
        parser = _parser(args, out)
        parser.parse()
        runner = parser.get_parsed_content("runner")
        runner.run()  # warm-up: first-call costs (allocator, highdicom's tables, lazy imports)
        end_to_end: dict[bool, list[float]] = {True: [], False: []}
        model_only: list[float] = []
        slices = 0
        for _ in range(args.repeats):
            for overlap in (False, True):
                runner.overlap = overlap
                tick = time.perf_counter()
                runner.run()
                end_to_end[overlap].append(time.perf_counter() - tick)
            seconds, slices = _model_only(parser, args)
            model_only.append(seconds)

    model = statistics.median(model_only)
    result = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "threads": torch.get_num_threads()},
        "settings": {"bundle": args.bundle, "device": args.device, "slices": slices, "repeats": args.repeats},
        "model_only_s": [round(t, 3) for t in model_only],
        "model_only_slices_per_s": round(slices / model, 2),
    }
    for overlap, name in ((False, "sequential"), (True, "overlapped")):
        e2e = statistics.median(end_to_end[overlap])
        result[name] = {
            "end_to_end_s": [round(t, 3) for t in end_to_end[overlap]],
            "end_to_end_slices_per_s": round(slices / e2e, 2),
            "end_to_end_over_model_only": round(e2e / model, 3),
            "non_model_ms_per_slice": round(1000 * (e2e - model) / slices, 2),
        }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
