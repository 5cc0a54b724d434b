"""The bundle command's overrides: each one must be an id the config uses, and ``--help`` lists them.

``python -m monai.bundle run`` hands every ``--name value`` it does not know itself to the config as an override, and a
name the config never reads is added and ignored: ``--epoch 3`` trained for the default number of epochs and
``--help`` started a full training. The bundle configs call :func:`check_overrides` first thing. It reads the command
line, as MONAI's ``run`` received it, and

- with ``--help`` (or ``-h``), prints the config's user-facing ids, their defaults and meanings
  (``bundles/bundle_ids.yaml``) and ends the process with status 0, before anything is read or written;
- refuses an override whose id (its first part: ``--network_def#channels`` is ``network_def``) is neither an id of
  the config nor an argument of MONAI's ``run``, naming the closest ids (``--epoch`` -> ``--epochs``), and a
  ``--device`` this machine does not have (:func:`pipeline.bundle.check_device`), again before anything is read or
  written.

Python callers override ids directly (:class:`~pipeline.inference.Segmenter`, ``ConfigWorkflow``); they get the same
check through :func:`unknown_ids`.
"""

from __future__ import annotations

import ast
import difflib
import json
import os
import re
import sys
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pipeline.bundle import IDS_FILE, check_device

__all__ = [
    "IDS_FILE",
    "RUN_ARGUMENTS",
    "UnknownOverrideError",
    "check_overrides",
    "command_line_options",
    "command_line_overrides",
    "help_text",
    "is_bundle_command",
    "root_id",
    "unknown_ids",
]

RUN_ARGUMENTS = frozenset(
    {
        # monai.bundle.scripts.run, create_workflow and ConfigWorkflow: MONAI's own, not config ids
        "run_id", "init_id", "final_id", "meta_file", "config_file", "logging_file", "tracking", "args_file",
        "workflow_name", "workflow_type", "properties_path",
    }
)  # fmt: skip
_MLFLOW_IDS = frozenset({"output_dir", "tracking_uri", "experiment_name", "run_name", "save_execute_config"})
"""What ``--tracking mlflow`` adds to a config (MONAI's ``DEFAULT_EXP_MGMT_SETTINGS``)."""


class UnknownOverrideError(ValueError):
    """An override names an id the config does not have."""


def is_bundle_command(argv: Sequence[str] | None = None) -> bool:
    """Whether this process is ``python -m monai.bundle`` (directly or under ``torchrun``).

    Args:
        argv: a command line; default ``sys.argv``.
    """
    argv = sys.argv if argv is None else argv
    return bool(argv) and Path(argv[0]).parts[-3:] == ("monai", "bundle", "__main__.py")


_NUMBER = re.compile(r"^-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def _is_flag(token: str) -> bool:
    """Whether ``token`` names an option, as Python Fire reads it: one or two dashes, not a negative number."""
    return token.startswith("-") and len(token) > 1 and not _NUMBER.match(token)


def command_line_options(argv: Sequence[str]) -> list[tuple[str, list[str]]]:
    """The options of a ``monai.bundle`` command line, as Python Fire reads them, each with the tokens it takes.

    ``--name=value`` is one token, ``--name value`` two, and a ``--name`` followed by another option (or by nothing) a
    switch of one token. As in Fire, one dash works like two (``-epochs 3``), a negative number is a value, and dashes
    inside a name are underscores (``--spatial-size`` is ``spatial_size``). Positional words (``run``, ``training``)
    are left out.

    Args:
        argv: command-line words, e.g. ``["run", "training", "--config_file", "x.json", "--epochs", "3"]``.

    Returns:
        ``(name, tokens)`` per option, in the order given, e.g. ``[("config_file", ["--config_file", "x.json"]), ...]``.
    """
    options: list[tuple[str, list[str]]] = []
    tokens = list(argv)
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if _is_flag(token):
            group = [token]
            if "=" not in token and i + 1 < len(tokens) and not _is_flag(tokens[i + 1]):
                group.append(tokens[i + 1])
            options.append((token.lstrip("-").split("=", 1)[0].replace("-", "_"), group))
            i += len(group)
        else:
            i += 1
    return options


def command_line_overrides(argv: Sequence[str]) -> dict[str, Any]:
    """The ``--name value`` pairs of a ``monai.bundle`` command line (:func:`command_line_options`): the value as
    typed, or ``True`` for a switch.

    Args:
        argv: command-line words, e.g. ``["run", "training", "--config_file", "x.json", "--epochs", "3"]``.

    Returns:
        name -> value, in the order given.
    """
    pairs: dict[str, Any] = {}
    for name, group in command_line_options(argv):
        option = group[0]
        pairs[name] = option.split("=", 1)[1] if "=" in option else group[1] if len(group) > 1 else True
    return pairs


def root_id(name: str) -> str:
    """The top-level config id an override reaches: ``network_def#channels`` (or MONAI's ``network_def::channels``)
    is ``network_def``."""
    return name.replace("::", "#").split("#", 1)[0]


def _config_files(value: Any) -> list[str]:
    """``--config_file`` as Fire hands it to MONAI: one path, or a Python list literal of paths."""
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    text = str(value).strip()
    if text.startswith("["):
        try:
            return [str(v) for v in ast.literal_eval(text)]
        except (ValueError, SyntaxError):
            pass
    return [text]


def _load(files: Sequence[str]) -> dict[str, Any]:
    from monai.bundle import ConfigParser

    return dict(ConfigParser.load_config_files(list(files)))


def unknown_ids(names: Iterable[str], config_ids: Iterable[str]) -> list[str]:
    """The messages for the ``names`` whose first part (before ``#``, MONAI's path separator, or ``::``) is not one of
    ``config_ids``, each with the closest ids.

    Args:
        names: override ids as given, e.g. ``["epoch", "network_def#channels"]``.
        config_ids: the config's top-level ids.

    Returns:
        One message per unknown id, e.g. ``"--epoch (did you mean --epochs?)"``; empty when all are known.
    """
    known = sorted(set(config_ids))
    problems = []
    for name in names:
        root = root_id(name)
        if root in known:
            continue
        close = difflib.get_close_matches(root, known, n=3, cutoff=0.6)
        hint = f" (did you mean {' or '.join('--' + c for c in close)}?)" if close else ""
        problems.append(f"--{name}{hint}")
    return problems


# what bundles/generate.py writes for a trained setting in evaluation and inference: the card's value, else a default
_CARD_SETTING = "pipeline.models.card_setting"
_CARD_EXPRESSION = re.compile(r"\$@model_card\.setting\('[\w#]+', \(?(.*?)\)?\)")


def _shown(value: Any, width: int = 60) -> str:
    """A default as ``--help`` shows it: literally, ``made by <function>`` for an object the config builds (``made by
    dataset_modality``: the data decides), ``the model card's, else ...`` for a trained setting."""
    text = value if isinstance(value, str) else json.dumps(value)
    card = _CARD_EXPRESSION.fullmatch(value) if isinstance(value, str) else None
    if isinstance(value, Mapping) and value.get("_target_") == _CARD_SETTING and "default" in value:
        text = "the model card's, else " + _shown(value["default"], width=len(text))
    elif isinstance(value, Mapping) and "_target_" in value:
        text = f"made by {str(value['_target_']).rsplit('.', 1)[-1]}"
    elif card:
        text = "the model card's, else " + _shown(card.group(1), width=len(text))
    elif isinstance(value, str) and value.startswith("$"):
        text = "computed: " + value[1:]
    return text if len(text) <= width else text[: width - 3] + "..."


def help_text(config: Mapping[str, Any], config_files: Sequence[str], ids_file: Path = IDS_FILE) -> str:
    """What ``--help`` prints: usage, then each section of ``bundle_ids.yaml`` with the ids this config has, each with
    its default as the config writes it and its meaning.

    Args:
        config: the loaded config (top-level id -> value).
        config_files: the config files, for the usage line.
        ids_file: the meanings file.
    """
    import yaml

    files = ",".join(config_files)
    lines = [
        f"usage: python -m monai.bundle run <training|evaluating|inference> --config_file {files} [--<id> <value> ...]",
        "",
        "Every id below is a setting of this config; the command line overrides it (--epochs 30, --spatial_size "
        '"[256,256]"), and a nested entry is overridden by its path (--network_def#channels "[16,32,64,128,256]").',
    ]
    try:
        sections = (yaml.safe_load(ids_file.read_text(encoding="utf-8")) or {}).get("sections", {})
    except (OSError, yaml.YAMLError):
        sections = {}
    described: set[str] = set()
    for title, meanings in sections.items():
        present = [key for key in meanings if key in config]
        if not present:
            continue
        lines += ["", f"{title}:"]
        for key in present:
            described.add(key)
            lines.append(f"  --{key}  (default: {_shown(config[key])})")
            lines += textwrap.wrap(" ".join(str(meanings[key]).split()), width=110, initial_indent="      ",
                                   subsequent_indent="      ")  # fmt: skip
    if not described:
        lines += ["", "ids:"] + [f"  --{key}  (default: {_shown(v)})" for key, v in config.items() if key[:1] != "_"]
    lines += ["", "MONAI's own arguments: --config_file, --meta_file, --logging_file, --args_file, --tracking."]
    return "\n".join(lines) + "\n"


def check_overrides(argv: Sequence[str] | None = None) -> None:
    """Refuse a bundle command's unknown overrides, or answer ``--help``; anything else passes.

    The bundle configs call it first, before any id is evaluated: nothing is read or written before it.

    Args:
        argv: the process's command line (default ``sys.argv``). Nothing happens unless it is a
            ``python -m monai.bundle`` command: Python callers check their overrides themselves.

    Raises:
        SystemExit: status 0 after printing the help for ``--help``; a one-line message (status 1) naming each
            unknown override with the closest ids.
    """
    argv = list(sys.argv if argv is None else argv)
    if not is_bundle_command(argv):
        return
    given = command_line_overrides(argv[1:])
    files = _config_files(given.get("config_file", ""))
    if not files or not all(os.path.isfile(f) for f in files):
        return  # MONAI has already refused a missing config
    config = _load(files)
    if "help" in given or "h" in given:
        sys.stdout.write(help_text(config, files))
        raise SystemExit(0)
    names = [n for n in given if n not in RUN_ARGUMENTS]
    if "args_file" in given:
        names += [n for n in _load([str(given["args_file"])]) if n not in RUN_ARGUMENTS]
    allowed = {*config, "_meta_", *(_MLFLOW_IDS if "tracking" in given else ())}
    problems = unknown_ids(names, allowed)
    if problems:
        raise SystemExit(
            f"error: {', '.join(problems)}: not a setting of {', '.join(files)}, so it would be ignored; nothing was "
            "run. `--help` lists the settings."
        )
    if isinstance(given.get("device"), str):
        try:
            check_device(given["device"])
        except ValueError as e:
            raise SystemExit(f"error: {e}") from None
