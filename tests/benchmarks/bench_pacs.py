"""Benchmark (not a test): a DICOM study through a real PACS against the same study from files, side by side.

Starts Orthanc (Debian packages ``orthanc`` and ``orthanc-dicomweb``) as ``tests/pacs`` does, with authentication on,
uploads the study, and times, in one process with the model loaded once (each ``run()`` after ``initialize()``):

- ``file_path``: the bundle's inference on the study folder;
- ``dicomweb_round_trip``: ``--input <study URL> --send_to <DICOMweb root>`` (retrieve, segment, write, send SEG, SR);
- ``dicomweb_to_dimse``: the same with ``--send_to dicom://...`` (C-STORE);
- ``listener``: Orthanc pushes the study to ``run listen`` (C-STORE), which segments each series once complete and
  sends the results back over C-STORE; from the push until every series is done, minus the ``complete_after_s`` wait.

Prints one JSON object (the last line of standard output). From the repository root::

    python tests/benchmarks/bench_pacs.py --input ../shared/data/dicom --bundle unet \
        --checkpoint outputs/unet/latest/models/model.pt --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import pydicom
from monai.bundle import ConfigWorkflow

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "pacs"))

from orthanc_server import FIXTURE, SMALL_UNET, free_port, start_orthanc, upload, write_netrc  # noqa: E402

COMPLETE_AFTER_S = 1.0


def _workflow(args: argparse.Namespace, out: Path, **overrides) -> ConfigWorkflow:
    weights = {"checkpoint": args.checkpoint} if args.checkpoint else {"checkpoint": str(FIXTURE / "model.pt")}
    network = {} if args.checkpoint else SMALL_UNET
    workflow = ConfigWorkflow(
        config_file=str(REPO / "bundles" / args.bundle / "inference.json"), workflow_type="infer",
        run_id="inference", logging_file=False, output_dir=str(out), device="cpu", **weights, **network, **overrides,
    )  # fmt: skip
    workflow.initialize()
    return workflow


def _timed(workflow: ConfigWorkflow) -> float:
    tick = time.perf_counter()
    workflow.parser.get_parsed_content("dicomweb").run()
    return time.perf_counter() - tick


def _listener_seconds(args: argparse.Namespace, work: Path, server, port: int, series_uids: set[str], k: int) -> float:
    """Seconds from Orthanc's push of the source series until the listener has done them all."""
    out = work / f"listen_{k}"
    workflow = _workflow(
        args, out, listen_port=port, listen_host="127.0.0.1", send_to=server.dimse, complete_after_s=COMPLETE_AFTER_S
    )
    listener = workflow.parser.get_parsed_content("listener")
    thread = threading.Thread(target=listener.run, daemon=True)
    thread.start()
    listener.ready.wait(60)
    resources = [server.post("/tools/lookup", uid).json()[0]["ID"] for uid in sorted(series_uids)]
    tick = time.perf_counter()
    server.post("/modalities/node/store", {"Resources": resources, "Synchronous": False})
    records = out / "node-state" / "series"
    while True:
        done = {
            record["series_uid"]
            for record in (json.loads(p.read_text()) for p in records.glob("*.json"))
            if record["status"] not in ("segmenting", "segmented")
        } if records.is_dir() else set()  # fmt: skip
        if series_uids <= done:
            break
        time.sleep(0.1)
    seconds = time.perf_counter() - tick - COMPLETE_AFTER_S
    listener.stop.set()
    thread.join(120)
    return seconds


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--input", required=True, help="a DICOM study folder")
    cli.add_argument("--bundle", default="unet")
    cli.add_argument("--checkpoint", default=None, help="default: the tests' fixture model (a small unet)")
    cli.add_argument("--repeats", type=int, default=3)
    args = cli.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        os.environ["NETRC"] = str(write_netrc(work / "netrc"))
        port = free_port()
        server = start_orthanc(work / "orthanc", extra={"DicomModalities": {"node": ["PIPELINE", "127.0.0.1", port]}})
        try:
            upload(server, Path(args.input))
            headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted(Path(args.input).rglob("*.dcm"))]
            study_uid = str(headers[0].StudyInstanceUID)
            url = f"{server.dicomweb}/studies/{study_uid}"
            variants = {
                "file_path": {"input": str(args.input)},
                "dicomweb_round_trip": {"input": url, "send_to": server.dicomweb},
                "dicomweb_to_dimse": {"input": url, "send_to": server.dimse},
            }
            flows = {name: _workflow(args, work / name, **settings) for name, settings in variants.items()}
            _timed(flows["file_path"])  # warm-up: first-call costs
            times: dict[str, list[float]] = {name: [] for name in [*variants, "listener"]}
            for k in range(args.repeats):
                for name, workflow in flows.items():
                    times[name].append(_timed(workflow))
                series_uids = {str(h.SeriesInstanceUID) for h in headers}
                times["listener"].append(_listener_seconds(args, work, server, port, series_uids, k))
        finally:
            server.stop()

    base = statistics.median(times["file_path"])
    result = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "settings": {"bundle": args.bundle, "instances": len(headers), "repeats": args.repeats},
        **{
            name: {
                "seconds": [round(t, 2) for t in runs],
                "median_s": round(statistics.median(runs), 2),
                "over_file_path": round(statistics.median(runs) / base, 2),
            }
            for name, runs in times.items()
        },
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
