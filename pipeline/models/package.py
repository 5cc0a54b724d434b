"""Package a trained run as a self-contained MONAI bundle folder and zip, to run anywhere ``pipeline`` is installed.

The folder follows the MONAI bundle specification::

    <out>/
      configs/metadata.json     the bundle's metadata, with this model's output channels (``network_data_format``),
                                settings, data fingerprint and metrics
      configs/inference.json    the bundle's inference config with this model's settings written in
      configs/logging.conf
      models/model.pt           the weights (a plain state dict), with models/model.json, their model card
      models/model.ts           TorchScript (what ``monai.bundle ckpt_export`` writes)
      docs/README.md            what the model is, what it was trained on, how well it did, how to run it
      large_files.yml           the weights files with their SHA-256, in the model zoo's format; the url is left
                                empty for the publisher to fill in
      LICENSE
    <out>.zip                   the same folder, zipped, weights included: it runs offline

and runs with MONAI's own command from any folder::

    python -m monai.bundle run --bundle_root <out> --config_file <out>/configs/inference.json --input <path>

    pipeline-package outputs/unet/latest --out shared/unet_lung   # python -m pipeline.models.package is the same

It passes the model zoo's checks: MONAI's ``check_properties`` for an inference workflow finds every required
property (``dataset_dir`` is the input, ``dataset`` what it holds to segment, ``evaluator`` the runner), and
``verify_net_in_out`` runs the network on the input ``network_data_format`` describes (this model's input channels
and the size multiple its network takes) and finds this model's output channels; packaging runs it before writing.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import logging
import re
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pipeline.bundle import BUNDLES_DIR
from pipeline.models.card import ModelCard, card_path, card_structures, file_sha256
from pipeline.segments import Structure, is_binary, structures_from_config
from pipeline.version import DISTRIBUTION, __version__

__all__ = ["channel_def", "package_run"]

logger = logging.getLogger(__name__)

_REF = re.compile(r"@(\w+)")  # the top-level id of a MONAI reference ("@validate#inferer" -> "validate")
_ROOTS = (
    *("imports", "initialize", "inference", "run", "finalize", "model_name", "input"),
    # the required properties of MONAI's inference workflow (monai.bundle.properties.InferProperties)
    *("bundle_root", "device", "dataset_dir", "dataset", "evaluator", "network_def", "inferer"),
)
"""Entries a packaged inference config keeps although nothing refers to them (MONAI runs or reads them)."""
LARGE_FILES = "large_files.yml"
"""The model zoo's list of files too large for its repository, each with a download url and a hash."""


def channel_def(structures: Sequence[Structure | Mapping[str, Any]]) -> dict[str, str]:
    """The output channels of a model of ``structures``, as MONAI's metadata ``channel_def`` names them: channel index
    (a string) -> structure. One structure: its one sigmoid channel, ``{"0": "Lung"}``; ``K`` of them: ``K + 1``
    softmax channels, the background first, ``{"0": "background", "1": "Right lung", "2": "Left lung"}``.
    """
    parsed = structures_from_config(structures)
    names = [s.label for s in parsed] if is_binary(parsed) else ["background", *(s.label for s in parsed)]
    return {str(channel): name for channel, name in enumerate(names)}


def _metadata(bundle: str, card: ModelCard) -> dict[str, Any]:
    """The bundle's ``metadata.json`` for these weights: its output channels named (``num_channels`` and
    ``channel_def`` of ``network_data_format.outputs.pred``), the label and prediction classes described, and the
    model card."""
    metadata = json.loads((BUNDLES_DIR / bundle / "metadata.json").read_text())
    structures = card_structures(card)
    channels = channel_def(structures)
    io = metadata.setdefault("network_data_format", {})
    image = io.setdefault("inputs", {}).setdefault("image", {})
    image.update(_input_format(card))
    metadata["image_classes"] = _image_classes(card)
    pred = io.setdefault("outputs", {}).setdefault("pred", {})
    pred.update({"num_channels": len(channels), "channel_def": channels})
    if is_binary(structures):
        name = structures[0].label
        metadata["label_classes"] = f"one channel, binary: 1 is {name}, 0 background"
        metadata["pred_classes"] = (
            f"one channel of logits; sigmoid > {card.settings.get('threshold', 0.5)} is {name} (value 1)"
        )
    else:
        values = ", ".join(f"{s.value} {s.label}" for s in structures)
        metadata["label_classes"] = f"a label map: 0 background, {values}"
        metadata["pred_classes"] = (
            f"{len(channels)} channels of logits, channel 0 the background and channel c the c-th structure; the "
            f"largest softmax channel is the pixel's structure, written as its label value ({values})"
        )
    metadata["pipeline_model_card"] = {k: v for k, v in card.to_dict().items() if k not in ("sha256",)}
    # these weights' own validation figures, not the repository bundle's reference run
    metadata["eval_metrics"] = {name.removeprefix("val_"): value for name, value in card.metrics.items()}
    metadata["eval_metrics_note"] = (
        f"validation metrics of these weights (epoch {card.epoch}) on their run's validation split, from their model "
        "card (models/model.json); null for a structure absent from that split"
    )
    packages = dict(metadata.get("required_packages_version", {}))
    # distribution names, as pip installs them: the import package `pipeline` comes from medical-slice-segmentation
    packages |= {DISTRIBUTION: __version__, "highdicom": _installed("highdicom")}
    metadata["required_packages_version"] = {name: version for name, version in packages.items() if version}
    return metadata


def _input_format(card: ModelCard) -> dict[str, Any]:
    """What ``network_data_format.inputs.image`` says that depends on the weights: their input channels and
    modality (the spatial shape, the size multiple of the network, stays the repository bundle's)."""
    in_channels = int(card.settings.get("in_channels", 1))
    names = ["red", "green", "blue"] if in_channels == 3 else [f"channel {c}" for c in range(in_channels)]
    return {
        "num_channels": in_channels,
        "modality": card.settings.get("modality", "CT"),
        "channel_def": {"0": "image"} if in_channels == 1 else {str(c): name for c, name in enumerate(names)},
    }


def _image_classes(card: ModelCard) -> str:
    """The metadata's ``image_classes``: what the network's input holds, with these weights' modality and window."""
    in_channels = int(card.settings.get("in_channels", 1))
    channels = "one channel" if in_channels == 1 else f"{in_channels} channels (colour; a grey image is repeated)"
    modality = str(card.settings.get("modality", "CT"))
    if modality.upper() == "CT":
        low, high = card.settings.get("window", [-1000, 400])
        return f"{channels}: CT in Hounsfield units, windowed to [{low}, {high}] and scaled to [0, 1]"
    return f"{channels}: {modality} images scaled to [0, 1] between their 0.5th and 99.5th intensity percentiles"


def _large_files(folder: Path, paths: Sequence[str]) -> str:
    """``large_files.yml`` for the files at ``paths`` (relative to ``folder``): the model zoo's format, each file with
    its SHA-256 and an empty url for the publisher to fill in."""
    import yaml

    entries = [{"path": p, "url": "", "hash_val": file_sha256(folder / p), "hash_type": "sha256"} for p in paths]
    header = (
        "# The files of this bundle that are too large for the model zoo's repository, in its format. The zip carries\n"
        "# them, so the bundle runs offline; to publish it, upload each file, write its address as its url, and leave\n"
        "# the files themselves out of the pull request. MONAI's download checks each file against its hash.\n"
    )
    return header + yaml.safe_dump({"large_files": entries}, sort_keys=False)


def _installed(distribution: str) -> str | None:
    """The installed version of ``distribution``, or None."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _referenced(value: Any) -> set[str]:
    if isinstance(value, str):
        return set(_REF.findall(value)) if value.startswith(("$", "@")) else set()
    if isinstance(value, dict):
        return set().union(*(_referenced(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(_referenced(v) for v in value))
    return set()


def _prune(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` without the top-level entries nothing reaches from :data:`_ROOTS` (the recipes, the demo data)."""
    keep, queue = set(), [k for k in _ROOTS if k in config]
    while queue:
        key = queue.pop()
        if key in keep or key not in config:
            continue
        keep.add(key)
        queue += sorted(_referenced(config[key]))
    return {k: v for k, v in config.items() if k in keep or k.startswith("_")}


def _inference_config(bundle: str, card: ModelCard) -> dict[str, Any]:
    """The bundle's inference config, with the model's settings written in and paths inside the bundle folder."""
    config = json.loads((BUNDLES_DIR / bundle / "inference.json").read_text())
    config.pop("_generated_", None)
    config["_packaged_"] = (
        f"by pipeline.models.package from a {card.model_name} training run: settings from models/model.json"
    )
    config["bundle_root"] = "."
    config["checkpoint"] = "$@bundle_root + '/models/model.pt'"
    config["train_output_dir"] = "$'outputs/' + @model_name"
    config["run"] = "@inference"  # MONAI's default run id: `monai.bundle run` with no id runs the inference
    # No training data travels with the weights, so MONAI's `dataset_dir` property names what to segment: an
    # application that sets it (or --dataset_dir) sets the input, and --input still works on its own.
    config["dataset_dir"] = ""
    config["input"] = "@dataset_dir"
    for name in config.get("trained_settings", {}):
        if name in card.settings:
            config[name] = card.settings[name]  # a literal: nothing left to look up in the repository
    return _prune(config)


def _figure(value: float | None) -> str:
    """A metric for the README: four decimals, or why there is none (a structure absent from the validation split
    has no Dice or IoU; its card records ``null``)."""
    return "n/a (not in the validation split)" if value is None else f"{value:.4f}"


def _readme(card: ModelCard, name: str) -> str:
    structures = {s.label: s.value for s in card_structures(card)}
    channels = "\n".join(
        f"| {c} | {label} | {structures.get(label, 0)} |" for c, label in channel_def(card_structures(card)).items()
    )
    settings = "\n".join(f"| `{k}` | `{json.dumps(v)}` |" for k, v in card.settings.items())
    metrics = "\n".join(f"| {k.removeprefix('val_')} | {_figure(v)} |" for k, v in card.metrics.items())
    data = json.dumps(card.data, indent=2)
    return f"""# {name}

A {card.network} trained with the `{card.model_name}` bundle of `pipeline` (epoch {card.epoch}). Research and
education only; not for clinical use.

## Run it

With `pipeline` installed (the `medical-slice-segmentation` wheel, or `pip install -e .` in its repository), from any
folder:

```bash
python -m monai.bundle run --bundle_root {name} --config_file {name}/configs/inference.json --input <path>
```

`<path>` is a 2D image (PNG, TIFF, JPEG, NIfTI, DICOM), a folder of them, or a DICOM study; masks, overlays, NIfTI
labels, DICOM SEG and reports go to `outputs/{card.model_name}/inference/` (`--output_dir` elsewhere). `--dataset_dir`,
MONAI's name for the data a workflow reads, is the same as `--input` here.

## Weights

`models/model.pt` (and `models/model.ts`) travel inside this bundle, so that it runs offline. `large_files.yml` lists
them with their SHA-256 in the model zoo's format; its `url` entries are empty until the files are uploaded somewhere
for a model-zoo submission, which must leave files over 25 MB out of its pull request.

## What it segments

The network's output channels (`network_data_format` in `configs/metadata.json`) and the value each structure has in
the masks and label maps it writes:

| channel | structure | label value |
|---|---|---|
{channels}

## Settings it was trained with

| setting | value |
|---|---|
{settings}

## Validation metrics of these weights

| metric | value |
|---|---|
{metrics}

## Training data fingerprint

```json
{data}
```

`models/model.json` holds all of this, with the weights' SHA-256 and the library versions.
"""


def package_run(run_dir: str | Path, out: str | Path, torchscript: bool = True) -> Path:
    """Write a trained run's best model as a MONAI bundle folder at ``out``, and ``out.zip``.

    Args:
        run_dir: a training run folder (``outputs/<bundle>/latest``) or its ``models/model.pt``.
        out: the bundle folder to create; it must not exist.
        torchscript: also write ``models/model.ts``.

    Returns:
        The zip file.

    Raises:
        FileNotFoundError: no weights in ``run_dir``.
        FileExistsError: ``out`` exists.
        ValueError: the weights have no model card.
    """
    run_dir, out = Path(run_dir), Path(out)
    weights = run_dir if run_dir.is_file() else run_dir / "models" / "model.pt"
    if not weights.is_file():
        raise FileNotFoundError(f"No weights file at {weights}: give a run folder or its models/model.pt.")
    card = ModelCard.read(weights)
    if not card.found:
        raise ValueError(f"{weights} has no model card (model.json beside it): only a training run's weights package")
    if out.exists():
        raise FileExistsError(f"{out} exists: give a new folder")
    bundle = card.bundle_dir().name
    staging = out.with_name(f".{out.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        (staging / "configs").mkdir(parents=True)
        (staging / "models").mkdir()
        (staging / "docs").mkdir()
        (staging / "configs" / "inference.json").write_text(
            json.dumps(_inference_config(bundle, card), indent=4) + "\n"
        )
        metadata = _metadata(bundle, card)
        (staging / "configs" / "metadata.json").write_text(json.dumps(metadata, indent=4) + "\n")
        shutil.copyfile(BUNDLES_DIR / bundle / "logging.conf", staging / "configs" / "logging.conf")
        shutil.copyfile(weights, staging / "models" / "model.pt")
        shutil.copyfile(card_path(weights), staging / "models" / "model.json")
        if torchscript:
            # torch and MONAI only when a TorchScript file is wanted: the command answers --help without them
            from pipeline.models.export import export_torchscript
            from pipeline.models.weights import load_state_dict_file

            network = load_state_dict_file(_network(bundle, staging), weights)
            export_torchscript(network, staging / "models" / "model.ts", channels=channel_def(card_structures(card)))
        weights_files = ["models/model.pt", *(["models/model.ts"] if torchscript else [])]
        (staging / LARGE_FILES).write_text(_large_files(staging, weights_files))
        _verify_net_in_out(staging)
        (staging / "docs" / "README.md").write_text(_readme(card, out.name))
        license_text = _license()
        if license_text is not None:
            (staging / "LICENSE").write_text(license_text)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    archive = shutil.make_archive(str(out), "zip", root_dir=out.parent, base_dir=out.name)
    logger.info("packaged %s (%s) as %s and %s", weights.name, bundle, out, archive)
    return Path(archive)


def _license() -> str | None:
    """The package's licence text: the clone's ``LICENSE`` beside ``bundles/``, or the installed distribution's copy
    (a wheel keeps it in its metadata, ``licenses/LICENSE``)."""
    beside = BUNDLES_DIR.parent / "LICENSE"
    if beside.is_file():
        return beside.read_text()
    try:
        files = importlib.metadata.distribution(DISTRIBUTION).files or []
    except importlib.metadata.PackageNotFoundError:
        return None
    found = next((f for f in files if f.name == "LICENSE"), None)
    return found.read_text() if found is not None else None


def _verify_net_in_out(folder: Path) -> None:
    """MONAI's ``verify_net_in_out`` on the bundle in ``folder``, as the model zoo runs it: the network of
    ``configs/inference.json`` takes the input ``network_data_format`` describes and returns its output channels.

    Raises:
        ValueError: it does not (the message is MONAI's).
    """
    from monai.bundle import verify_net_in_out

    try:
        verify_net_in_out(
            net_id="network_def",
            meta_file=str(folder / "configs" / "metadata.json"),
            config_file=str(folder / "configs" / "inference.json"),
            device="cpu",
            bundle_root=str(folder),
        )
    except (KeyError, RuntimeError, ValueError) as e:
        raise ValueError(f"the packaged bundle fails MONAI's verify_net_in_out: {e}") from e


def _network(bundle: str, folder: Path) -> Any:
    """The packaged config's network, on the CPU."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(folder / "configs" / "inference.json"))
    parser.update({"bundle_root": str(folder), "device": "cpu"})
    return parser.get_parsed_content("network_def")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a training run folder (outputs/<bundle>/latest) or its model.pt")
    parser.add_argument("--out", type=Path, required=True, help="the bundle folder to create (and <out>.zip)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        archive = package_run(args.run, args.out)
    except (OSError, ValueError) as e:
        print(f"error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 1
    print(f"Wrote {args.out} and {archive}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
