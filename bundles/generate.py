"""Write every bundle's train.json, evaluate.json and inference.json from the shared wiring and the bundle's model.json.

MONAI applies command-line overrides, overlay files and ``--tracking`` to the config as written, before any macro is
expanded, so a bundle config has to hold every object it runs under its own id. These files are therefore generated,
self-contained, from sources where each fact is written once:

    bundles/common/train.json      the training workflow, and the definitions evaluation and inference reuse
    bundles/common/predict.json    weights (one checkpoint or an ensemble), flip TTA, mask clean-up: shared by
                                   evaluation and inference
    bundles/common/evaluate.json   the evaluation workflow
    bundles/common/inference.json  the inference workflow
    bundles/<name>/model.json      what differs about one model: model_name, network_def and any default of its own
                                   (a key that the common files also set replaces their value)

Each generated file is the bundle's model keys and ``bundle_root``, then, for evaluation and inference, the entries of
``common/train.json`` that the workflow refers to (followed through their own references, under the same ids, such as
``validate#inferer``), then the workflow's own files. In evaluation and inference, each setting that training records in
the model card (the ids in ``trained_settings``) reads the card of the loaded weights first and falls back to the
default recipe's value: ``"spatial_size": "$@model_card.setting('spatial_size', [192, 192])"``; a dict setting does so
leaf by leaf, so ``--segment#label`` still addresses one. The training recipes themselves stay in ``train.json``.
Run from anywhere::

    python bundles/generate.py           # rewrite the generated files
    python bundles/generate.py --check   # exit 1, naming each stale file, when a generated file differs
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

BUNDLES_DIR = Path(__file__).resolve().parent
MODEL_FILE = "model.json"
WORKFLOWS = {
    "train": ["train.json"],
    "evaluate": ["predict.json", "evaluate.json"],
    "inference": ["predict.json", "inference.json"],
}
"""Generated file name (without ``.json``) -> its own files in ``common/``; ``train`` holds all of common/train.json."""
CARD_SETTINGS = "trained_settings"
"""The id in common/train.json of the settings a model card records, each written ``"<id>": "@<id>"``."""
ALWAYS = ("imports",)
"""Entries of common/train.json every config carries although no reference names them (MONAI reads ``imports``)."""
WIDTH = 120
# MONAI's reference syntax (monai.bundle.ReferenceResolver): "@id#sub#sub", counted in "$" expressions or as a
# whole string; "::" is the older separator.
_REF = re.compile(r"@(\w*(?:(?:#|::)\w*)*)")
# A training recipe setting: "$@recipes[@chosen_recipe]['<setting>']".
_RECIPE_SETTING = re.compile(r"\$@recipes\[@chosen_recipe\]\['(\w+)'\]")
DEFAULT_RECIPE = "default"
"""The recipe whose values evaluation and inference fall back to when the model card lacks a setting."""


class BundleSourceError(ValueError):
    """A source file is inconsistent: a reference to nothing, or an id defined twice."""


def _refs(value: Any) -> Iterator[str]:
    """Every id that ``value`` refers to, as MONAI reads references: in expressions and in whole ``@id`` strings."""
    if isinstance(value, str):
        for match in _REF.finditer(value):
            if value.startswith("$") or match.group(0) == value:
                yield match.group(1).replace("::", "#")
    elif isinstance(value, dict):
        for v in value.values():
            yield from _refs(v)
    elif isinstance(value, list):
        for v in value:
            yield from _refs(v)


def _get(config: Any, path: list[str]) -> Any:
    for key in path:
        config = config[int(key)] if isinstance(config, list) else config[key]
    return config


def _has(config: Any, path: list[str]) -> bool:
    try:
        _get(config, path)
    except (KeyError, IndexError, ValueError, TypeError):
        return False
    return True


def _addressable(config: dict, ref: str) -> list[str]:
    """The part of ``ref`` to copy from ``config``: the id itself, or the list that holds it (indices must not move)."""
    path = ref.split("#")
    for depth in range(1, len(path)):
        if isinstance(_get(config, path[:depth]), list):
            return path[:depth]
    return path


def _select(config: dict, paths: list[list[str]]) -> dict:
    """The entries of ``config`` at ``paths`` (and everything under them), nested as in ``config`` and in its order."""

    def keep(node: dict, prefix: list[str]) -> dict:
        out = {}
        for key, value in node.items():
            here = [*prefix, key]
            if any(p == here for p in paths):
                out[key] = value
            elif any(p[: len(here)] == here for p in paths):
                out[key] = keep(value, here)
        return out

    return keep(config, [])


def _pulled(library: dict, refs: list[str], shared: set[str], own: set[str], workflow: str) -> list[list[str]]:
    """The paths of ``library`` that ``refs`` need, followed through their own references, with :data:`ALWAYS`.

    ``shared`` ids (the model's) and the workflow's ``own`` ids are not pulled.

    Raises:
        BundleSourceError: for a reference that nothing defines, or a pulled entry that refers to an id the workflow
            defines itself (it would silently bind to the workflow's meaning, e.g. a loaded ``network``).
    """
    wanted = [[key] for key in ALWAYS]
    queue = list(refs)
    while queue:
        ref = queue.pop(0)
        if ref.split("#")[0] in shared | own or ref.startswith("_meta_"):
            continue
        if not _has(library, ref.split("#")):
            raise BundleSourceError(f"{workflow} refers to '@{ref}', which no source defines")
        path = _addressable(library, ref)
        if any(path[: len(w)] == w for w in wanted):
            continue
        wanted = [w for w in wanted if w[: len(path)] != path] + [path]
        picked = _get(library, path)
        shadowed = sorted({r for r in _refs(picked) if r.split("#")[0] in own})
        if shadowed:
            raise BundleSourceError(
                f"common/train.json's '{'#'.join(path)}' refers to {shadowed}, which {workflow} defines itself; "
                "rename one of them"
            )
        queue.extend(_refs(picked))
    return wanted


def _card_settings(library: dict) -> list[str]:
    settings = library.get(CARD_SETTINGS, {})
    odd = [f"{k}: {v}" for k, v in settings.items() if v != f"@{k}"]
    if odd:
        raise BundleSourceError(f"common/train.json's {CARD_SETTINGS} entries must read '<id>': '@<id>', not {odd}")
    return list(settings)


def _from_card(name: str, value: Any) -> Any:
    """``value`` (a setting's training default) as an expression that prefers the loaded weights' model card."""
    if isinstance(value, dict) and "_target_" not in value:
        return {k: _from_card(f"{name}#{k}", v) for k, v in value.items()}
    if isinstance(value, dict):  # an object the config builds: the card's value, else that object, built only then
        default = {**value, "_mode_": "callable"}
        return {"_target_": "pipeline.models.card_setting", "card": "@model_card", "name": name, "default": default}
    if isinstance(value, str) and value.startswith("$"):
        default = f"({value[1:]})"
    elif isinstance(value, str) and value.startswith("@"):
        default = value
    elif isinstance(value, str) and ("@" in value or "%" in value):
        raise BundleSourceError(f"the default of {name} ({value!r}) cannot become part of an expression")
    else:
        default = repr(value)
    return f"$@model_card.setting({name!r}, {default})"


def _default_recipe(library: dict) -> dict:
    """``library`` with each training recipe setting (``"$@recipes[@chosen_recipe]['epochs']"``) replaced by its value
    in the default recipe: evaluation and inference take their settings from the model card, and fall back to the
    defaults without carrying the training recipes along."""
    recipes, chosen = library.get("recipes", {}), DEFAULT_RECIPE
    out = {}
    for key, value in library.items():
        match = _RECIPE_SETTING.fullmatch(value) if isinstance(value, str) else None
        out[key] = recipes[chosen][match.group(1)] if match else value
    return out


def compose(name: str, model: dict, common: dict[str, dict], workflow: str) -> dict:
    """One bundle's generated config.

    Args:
        name: the bundle's folder name (``bundle_root`` is found from it).
        model: the bundle's ``model.json``.
        common: ``common/<file>.json`` contents by file name.
        workflow: a key of :data:`WORKFLOWS`.

    Returns:
        The config, in the order it is written.

    Raises:
        BundleSourceError: for a reference that nothing defines, or an id that two of the workflow's files define.
    """
    defaults = {k: v for k, v in model.items() if k != "model_name"}
    library = {k: defaults.get(k, v) for k, v in common["train.json"].items()}
    own: dict = {}
    for file in WORKFLOWS[workflow]:
        if file == "train.json":
            continue
        for key, value in common[file].items():
            if key in own:
                raise BundleSourceError(f"common/{file} defines '{key}', which another file of {workflow} defines")
            own[key] = defaults.get(key, value)
    head = {
        "_generated_": f"by bundles/generate.py from common/*.json and {name}/{MODEL_FILE}: edit those, then run it",
        "model_name": model["model_name"],
        "bundle_root": {"_target_": "pipeline.bundle.bundle_root", "name": name},
    }
    # the model's own entries; one that a common file also sets took that value's place above, in every config
    head |= {k: v for k, v in defaults.items() if not any(k in c for c in common.values())}

    if workflow == "train":
        body = dict(library)
    else:
        library = _default_recipe(library)
        wanted = _pulled(library, [*_refs(head), *_refs(own)], shared=set(head), own=set(own), workflow=workflow)
        body = _select(library, wanted)
        body |= {k: _from_card(k, v) for k, v in body.items() if k in _card_settings(library)}
        body |= own
    config = head | body
    missing = sorted({r for r in _refs(config) if r.split("#")[0] != "_meta_" and not _has(config, r.split("#"))})
    if missing:
        raise BundleSourceError(f"{name}/{workflow}.json would refer to ids it does not define: {missing}")
    return config


def dumps(value: Any, indent: int = 0, used: int = 0) -> str:
    """JSON with one entry per line where a value does not fit on the rest of its line (``WIDTH`` columns)."""
    inline = json.dumps(value, ensure_ascii=False)
    if not isinstance(value, (dict, list)) or not value or (indent and used + len(inline) <= WIDTH):
        return inline
    pad = " " * (indent + 4)
    if isinstance(value, dict):
        items = [f"{pad}{json.dumps(k)}: " for k in value]
        lines = [p + dumps(v, indent + 4, len(p)) for p, v in zip(items, value.values(), strict=True)]
        return "{\n" + ",\n".join(lines) + "\n" + " " * indent + "}"
    lines = [pad + dumps(v, indent + 4, len(pad)) for v in value]
    return "[\n" + ",\n".join(lines) + "\n" + " " * indent + "]"


def generate(bundles_dir: Path = BUNDLES_DIR) -> dict[Path, str]:
    """Every generated file's path and text."""
    common = {p.name: json.loads(p.read_text()) for p in sorted((bundles_dir / "common").glob("*.json"))}
    files = {}
    for model_file in sorted(bundles_dir.glob(f"*/{MODEL_FILE}")):
        model = json.loads(model_file.read_text())
        name = model_file.parent.name
        for workflow in WORKFLOWS:
            files[model_file.parent / f"{workflow}.json"] = dumps(compose(name, model, common, workflow)) + "\n"
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when a generated file differs")
    parser.add_argument("--bundles_dir", type=Path, default=BUNDLES_DIR, help="the bundles folder (default: this one)")
    args = parser.parse_args(argv)
    try:
        files = generate(args.bundles_dir)
    except (BundleSourceError, OSError, json.JSONDecodeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    stale = [path for path, text in files.items() if not path.is_file() or path.read_text() != text]
    if args.check:
        for path in stale:
            print(f"{path} differs from its sources: run python {Path(__file__).as_posix()}", file=sys.stderr)
        return 1 if stale else 0
    for path in stale:
        path.write_text(files[path])
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
