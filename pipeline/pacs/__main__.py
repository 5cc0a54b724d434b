"""``python -m pipeline.pacs send --output_dir <folder> [--send_to <root>] [--ca_bundle <pem>] [--retries <n>]
[--ae_title <AE>]``.

Sends the DICOM results of a finished inference run that were not sent (``summary.json``'s ``pacs`` record lists
them), without running the model again; with no such record, every written series. ``--send_to`` defaults to the
server the run sent to. Ends with one line and exit status 1 when something is still not sent.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline.pacs.dicomweb import DEFAULT_RETRIES
from pipeline.pacs.dimse import DEFAULT_AE_TITLE
from pipeline.pacs.errors import PacsError
from pipeline.pacs.send import RECORD, destination, read_summary, send_results


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline.pacs", description=__doc__.split("\n\n")[1])
    commands = parser.add_subparsers(dest="command", required=True)
    send = commands.add_parser("send", help="send a run's results that were not sent")
    send.add_argument("--output_dir", required=True, help="the inference run's output folder")
    send.add_argument(
        "--send_to", default=None, help="DICOMweb root or dicom://AE@host:port; default the one the run sent to"
    )
    send.add_argument("--ca_bundle", default=None, help="PEM file of the CAs to trust (a private CA)")
    send.add_argument("--retries", type=int, default=DEFAULT_RETRIES, help="retries of a transient failure")
    send.add_argument("--ae_title", default=DEFAULT_AE_TITLE, help="this node's calling AE title (DIMSE)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The command; returns its exit status."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%X")
    try:
        output_dir = Path(args.output_dir)
        record = read_summary(output_dir).get(RECORD) or {}
        send_to = args.send_to or record.get("send_to")
        if not send_to:
            raise ValueError("summary.json records no server the results were sent to: pass --send_to <root>")
        server = destination(send_to, args.ca_bundle, args.retries, args.ae_title)
        sent = send_results(output_dir, server, only_unsent=True)
    except (PacsError, ValueError, OSError) as e:
        sys.stderr.write(f"error: {e}\n")
        return 1
    logging.getLogger("pipeline.pacs").info("%d series sent to %s in all", len(sent["sent"]), sent["send_to"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
