"""Issue 25's probes, through the real commands, on real CT slices: each must end in a clear refusal, a flag or a
correct result, never in "ok" with a wrong result, a traceback, or a file a model card made.

Run on purpose, not in CI (it needs a trained CT model and the shared lung CT slices)::

    python -m monai.bundle run training --config_file bundles/unet/train.json \\
        --dataset_dir ../shared/data/lung_ct --output_dir /tmp/p25/model --epochs 6
    python tests/benchmarks/probe_never_silently_wrong.py --run /tmp/p25/model/latest \\
        --slices ../shared/data/lung_ct --work /tmp/p25/probes

It prints one row per probe: what was fed, the exit status, the statuses in ``summary.json``, the first line of the
message and, where it matters, the peak resident memory (GNU time).
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tifffile
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[2]


def _command(kind: str, *args: str) -> list[str]:
    config = REPO / "bundles" / "unet" / f"{'train' if kind == 'training' else kind}.json"
    return [sys.executable, "-m", "monai.bundle", "run", kind, "--config_file", str(config), *args]


def _run(command: list[str], cwd: Path, timed: bool = False) -> tuple[int, str, float | None]:
    if timed:
        command = ["/usr/bin/time", "-f", "maxrss_kib %M", *command]
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=1800)
    text = result.stdout + result.stderr
    peak = None
    if timed:
        peak = next(int(line.split()[1]) for line in reversed(text.splitlines()) if line.startswith("maxrss_kib"))
        peak = round(peak / 2**20, 2)
    return result.returncode, text, peak


def _message(text: str) -> str:
    for line in text.splitlines():
        if line.startswith(("error:", "interrupted:")) or " flagged: " in line:
            return line.strip()[:220]
    return ""


def _statuses(out: Path) -> str:
    try:
        summary = json.loads((out / "summary.json").read_text())
    except (OSError, ValueError):
        return "no summary.json"
    counts = {k: summary.get(f"num_{k}") for k in ("ok", "flagged", "failed")}
    extra = ", interrupted" if summary.get("interrupted") else ""
    return f"{counts['ok']} ok, {counts['flagged']} flagged, {counts['failed']} failed{extra}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="a CT training run folder (its models/model.pt)")
    parser.add_argument("--slices", type=Path, required=True, help="the lung CT slices (images/, pairs.csv)")
    parser.add_argument("--work", type=Path, required=True, help="an empty folder for the probes")
    args = parser.parse_args()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    weights = (args.run / "models" / "model.pt").resolve()
    with open(args.slices / "pairs.csv", newline="") as f:
        val = [row["filename"] for row in csv.DictReader(f) if row["split"] == "val"]
    real = work / "real"
    real.mkdir(exist_ok=True)
    for name in val[:8]:
        shutil.copyfile(args.slices / "images" / name, real / name)
    hu = tifffile.imread(real / val[0]).astype(np.float32)
    rows: list[tuple[str, int, str, str, float | None]] = []

    def infer(what: str, folder: Path, *extra: str, timed: bool = False, checkpoint: Path = weights) -> None:
        out = work / "out" / what.replace(" ", "_")
        shutil.rmtree(out, ignore_errors=True)
        command = _command("inference", "--checkpoint", str(checkpoint), "--input", str(folder), "--output_dir",
                           str(out), "--device", "cpu", *extra)  # fmt: skip
        rc, text, peak = _run(command, work, timed)
        rows.append((what, rc, _statuses(out), _message(text), peak))

    def folder_of(name: str, write: Callable[[Path], None]) -> Path:
        folder = work / "inputs" / name
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        write(folder)
        return folder

    infer("8 real CT slices (HU)", real)
    eight_bit = np.clip((hu + 1000) / 1400 * 255, 0, 255).round().astype(np.uint8)
    infer("8-bit PNG export of a CT slice", folder_of("png", lambda f: Image.fromarray(eight_bit).save(f / "a.png")))
    constant = np.full(hu.shape, -1000, np.int16)
    infer("constant image", folder_of("constant", lambda f: tifffile.imwrite(f / "blank.tif", constant)))
    infer("8-bit PNG, --force_input true", work / "inputs" / "png", "--force_input", "true")
    big = np.asarray(Image.fromarray(hu).resize((7000, 7000), Image.BILINEAR)).astype(np.int16)
    infer("7000 x 7000 CT slice (49 Mpx)", folder_of("big", lambda f: tifffile.imwrite(f / "big.tif", big)),
          timed=True)  # fmt: skip

    broken = work / "broken"
    (broken / "models").mkdir(parents=True, exist_ok=True)
    state = torch.load(weights, map_location="cpu", weights_only=True)
    norms = [k for k in state if k.endswith("running_var")]
    state[norms[0]] = torch.full_like(state[norms[0]], -1.0)  # finite weights, NaN logits
    torch.save(state, broken / "models" / "model.pt")
    shutil.copyfile(weights.with_suffix(".json"), broken / "models" / "model.json")
    infer("weights giving NaN logits", real, checkpoint=broken / "models" / "model.pt")

    marker = work / "marker"
    hostile = work / "hostile_bundle"
    hostile.mkdir(exist_ok=True)
    (hostile / "inference.json").write_text(json.dumps({"imports": [f"$open({str(marker)!r}, 'w').write('x')"]}))
    for what, name in (("card: model_name path traversal", "../../../../" + str(hostile).lstrip("/")),
                       ("card: model_name absolute path", str(hostile))):  # fmt: skip
        shared = work / "shared_run"
        shutil.rmtree(shared, ignore_errors=True)
        shutil.copytree(args.run.resolve() / "models", shared / "models")
        card = json.loads((shared / "models" / "model.json").read_text())
        (shared / "models" / "model.json").write_text(json.dumps({**card, "model_name": name}))
        script = "import sys; from pipeline import Segmenter; Segmenter.from_run(sys.argv[1], device='cpu')"
        result = subprocess.run([sys.executable, "-c", script, str(shared)], capture_output=True, text=True, cwd=work)
        last = (result.stderr.strip().splitlines() or [""])[-1][:220]
        rows.append((f"{what} (Segmenter.from_run)", result.returncode, f"marker created: {marker.exists()}", last,
                     None))  # fmt: skip

    for what, extra in (("--epoch 3 --threshhold 0.3", ["--epoch", "3", "--threshhold", "0.3"]),
                        ("--help", ["--help"]), ("--device cuda", ["--device", "cuda"])):  # fmt: skip
        folder = work / "cli" / what.split()[0].strip("-")
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        rc, text, _ = _run(_command("training", *extra, "--output_dir", str(folder / "out"), "--dataset_dir",
                                    str(folder / "data")), folder)  # fmt: skip
        written = sorted(p.name for p in folder.iterdir())
        first = _message(text) or next((ln for ln in text.splitlines() if ln.startswith("usage:")), "")[:120]
        rows.append((f"training {what}", rc, f"files written: {written or 'none'}", first, None))

    many = work / "inputs" / "many"
    shutil.rmtree(many, ignore_errors=True)
    many.mkdir(parents=True)
    for k in range(300):
        tifffile.imwrite(many / f"s{k:03d}.tif", np.roll(hu, k, axis=1).astype(np.int16))
    out = work / "out" / "interrupted"
    shutil.rmtree(out, ignore_errors=True)
    command = _command("inference", "--checkpoint", str(weights), "--input", str(many), "--output_dir", str(out),
                       "--device", "cpu")  # fmt: skip
    process = subprocess.Popen(command, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while not (out / "images").is_dir() or len(list((out / "images").glob("*_mask.png"))) < 20:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate()
    summary = json.loads((out / "summary.json").read_text())
    recorded = {o for r in summary["inputs"] for o in r.get("outputs", [])}
    on_disk = {p.relative_to(out).as_posix() for p in (out / "images").iterdir()}
    rows.append(("Ctrl-C during 300 slices", process.returncode,
                 f"{_statuses(out)}; {summary['num_not_run']} not run; records match files: {recorded == on_disk}",
                 _message(stderr), None))  # fmt: skip

    print("| probe | exit | outcome | message | peak GiB |")
    print("|---|---|---|---|---|")
    for what, rc, outcome, message, peak in rows:
        print(f"| {what} | {rc} | {outcome} | {message.replace('|', '/')} | {'' if peak is None else peak} |")


if __name__ == "__main__":
    main()
