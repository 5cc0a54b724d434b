"""MkDocs hook: the bundle reference page, generated from the bundles' configs when the site is built.

Every top-level id of every generated config (``bundles/<bundle>/train.json``, ``evaluate.json``, ``inference.json``)
must have a meaning in ``bundles/bundle_ids.yaml`` or be listed there as internal wiring, and every id that file
names must be in some config. The build fails otherwise, and ``tests/test_docs.py`` runs the same check without MkDocs,
so the reference cannot drift from the configs. The page shows each id's default as the config writes it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "MARKER",
    "MEANINGS_FILE",
    "PAGE",
    "WORKFLOWS",
    "BundleIds",
    "check_bundle_ids",
    "read_bundle_ids",
    "read_configs",
    "read_line_counts",
    "render_reference",
]

WORKFLOWS = ("train", "evaluate", "inference")
"""The generated configs of each bundle, by file stem."""

MEANINGS_FILE = Path("bundles/bundle_ids.yaml")
"""The one home of the ids' meanings, relative to the repository root."""

PAGE = "reference/bundle.md"
"""The page whose marker is replaced by the generated reference."""

MARKER = "<!-- bundle reference: generated at build time by docs/hooks/bundle_reference.py -->"

_SHORT = 60  # a list or object whose JSON is longer is summarised instead of written out
_SHORT_CALL = 80  # a longer _target_ call is shown with its argument names only


@dataclass
class BundleIds:
    """The contents of ``bundle_ids.yaml``.

    Attributes:
        sections: section title -> {id: meaning}, in the file's order.
        internal: ids that only wire the configs together, listed without a meaning.
    """

    sections: dict[str, dict[str, str]]
    internal: list[str]

    def meanings(self) -> dict[str, str]:
        """Every described id and its meaning."""
        return {key: text for section in self.sections.values() for key, text in section.items()}


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses a key written twice in one mapping (PyYAML keeps the last silently)."""


def _unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"{key!r} is written twice", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def read_bundle_ids(path: str | Path) -> BundleIds:
    """Read the meanings file.

    Args:
        path: ``bundles/bundle_ids.yaml``: ``sections`` (title -> {id: meaning}) and ``internal`` (a list).

    Returns:
        Its :class:`BundleIds`.

    Raises:
        ValueError: a key written twice, or a file not of that shape.
    """
    path = Path(path)
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
    except yaml.YAMLError as e:
        raise ValueError(f"{path.name}: {e}") from e
    if not isinstance(data, Mapping) or set(data) != {"sections", "internal"}:
        raise ValueError(f"{path.name} must hold exactly two keys, 'sections' and 'internal'")
    sections = data["sections"]
    if not isinstance(sections, Mapping) or not all(isinstance(s, Mapping) for s in sections.values()):
        raise ValueError(f"{path.name}: 'sections' must map each section title to {{id: meaning}}")
    internal = data["internal"]
    if not isinstance(internal, list) or not all(isinstance(key, str) for key in internal):
        raise ValueError(f"{path.name}: 'internal' must be a list of ids")
    return BundleIds({str(title): dict(ids) for title, ids in sections.items()}, list(internal))


def read_configs(bundles_dir: str | Path) -> dict[str, dict[str, dict[str, Any]]]:
    """The generated configs of every bundle: {bundle: {workflow: config}}.

    A bundle is a folder of ``bundles_dir`` with a ``model.json`` (``common/`` holds sources, not a bundle).

    Raises:
        ValueError: no bundle, or a bundle without one of the generated configs.
    """
    bundles_dir = Path(bundles_dir)
    configs: dict[str, dict[str, dict[str, Any]]] = {}
    for folder in sorted(p.parent for p in bundles_dir.glob("*/model.json")):
        configs[folder.name] = {}
        for workflow in WORKFLOWS:
            path = folder / f"{workflow}.json"
            if not path.is_file():
                raise ValueError(f"{folder.name}/{path.name} is missing: run python bundles/generate.py")
            configs[folder.name][workflow] = json.loads(path.read_text(encoding="utf-8"))
    if not configs:
        raise ValueError(f"no bundle (a folder with model.json) in {bundles_dir}")
    return configs


def _where(configs: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> dict[str, list[tuple[str, str]]]:
    """Each top-level id -> the (bundle, workflow) pairs whose config has it, ids in order of first appearance."""
    where: dict[str, list[tuple[str, str]]] = {}
    for workflow in WORKFLOWS:
        for bundle, by_workflow in configs.items():
            for key in by_workflow.get(workflow, {}):
                where.setdefault(key, []).append((bundle, workflow))
    return where


def check_bundle_ids(configs: Mapping[str, Mapping[str, Mapping[str, Any]]], ids: BundleIds) -> list[str]:
    """What the meanings file gets wrong about the configs; an empty list when nothing.

    Args:
        configs: from :func:`read_configs`.
        ids: from :func:`read_bundle_ids`.

    Returns:
        One sentence per problem: an id of a config that is neither described nor internal, an id the file names that
        no config has, an id described twice or both described and internal, an empty meaning.
    """
    problems = []
    where = _where(configs)
    named: dict[str, list[str]] = {}
    for title, section in ids.sections.items():
        for key, text in section.items():
            named.setdefault(key, []).append(f"section {title!r}")
            if not isinstance(text, str) or not text.strip():
                problems.append(f"{key!r} in section {title!r} has no meaning: write one or two sentences")
    for key in ids.internal:
        named.setdefault(key, []).append("internal")
    for key, places in named.items():
        if len(places) > 1:
            problems.append(f"{key!r} is named {len(places)} times ({', '.join(places)}): keep one")
    for key, found in where.items():
        if key not in named:
            files = sorted({f"{workflow}.json" for _, workflow in found})
            problems.append(
                f"{key!r} ({', '.join(files)}) has no meaning in {MEANINGS_FILE}: describe it in a section, "
                "or list it under 'internal' if it only wires the config together"
            )
    for key, places in named.items():
        if key not in where:
            problems.append(f"{key!r} ({places[0]}) is in no generated config: remove it from {MEANINGS_FILE}")
    return problems


def _escape_pipes(text: str) -> str:
    """``text`` for a table cell: pipes outside code spans escaped, line breaks as spaces."""
    parts = " ".join(text.split()).split("`")
    return "`".join(part.replace("|", "\\|") if i % 2 == 0 else part for i, part in enumerate(parts))


def _code(text: str) -> str:
    """``text`` as a Markdown code span, whatever backticks it holds."""
    fence = "``" if "`" in text else "`"
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _argument(value: Any) -> str:
    """An argument of a ``_target_`` call as the config writes it: references and expressions bare, the rest JSON."""
    if isinstance(value, str) and value[:1] in ("@", "$"):
        return value
    return json.dumps(value, ensure_ascii=False)


def _show(value: Any) -> str:
    """A default as the config writes it: scalars and short lists literally, a ``_target_`` object as the call it
    makes, long objects and lists by their size and keys."""
    if isinstance(value, str):
        return _code(value) if value else '`""`'
    if isinstance(value, Mapping) and isinstance(value.get("_target_"), str):
        arguments = {k: v for k, v in value.items() if k != "_target_"}
        call = f"{value['_target_']}({', '.join(f'{k}={_argument(v)}' for k, v in arguments.items())})"
        if len(call) > _SHORT_CALL:
            call = f"{value['_target_']}({', '.join(arguments)})"
        return _code(call)
    written = json.dumps(value, ensure_ascii=False)
    if len(written) <= _SHORT:
        return _code(written)
    if isinstance(value, Mapping):
        return "object: " + ", ".join(_code(k) for k in value)
    if isinstance(value, list):
        return f"list of {len(value)}"
    return _code(written)


def _default(configs: Mapping[str, Mapping[str, Mapping[str, Any]]], key: str, found: list[tuple[str, str]]) -> str:
    """One default when every config shows the same; else the defaults by bundle or by workflow, whichever tells them
    apart."""
    values = {pair: _show(configs[pair[0]][pair[1]][key]) for pair in found}  # alike when shown alike

    def show(pair: tuple[str, str]) -> str:
        return values[pair]

    def alike(pairs: list[tuple[str, str]]) -> bool:
        return len({values[p] for p in pairs}) == 1

    bundles = list(dict.fromkeys(bundle for bundle, _ in found))
    workflows = [w for w in WORKFLOWS if any(w == workflow for _, workflow in found)]
    by_bundle = {b: [p for p in found if p[0] == b] for b in bundles}
    by_workflow = {w: [p for p in found if p[1] == w] for w in workflows}
    if alike(found):
        return show(found[0])
    if all(alike(pairs) for pairs in by_bundle.values()):
        return "<br>".join(f"{b}: {show(pairs[0])}" for b, pairs in by_bundle.items())
    shown = []
    for w, pairs in by_workflow.items():
        if alike(pairs):
            shown.append(f"{w}: {show(pairs[0])}")
        else:
            shown.append(f"{w}: " + "; ".join(f"{b} {show((b, w))}" for b, _ in pairs))
    return "<br>".join(shown)


def _configs_cell(found: list[tuple[str, str]], bundles: list[str]) -> str:
    cells = []
    for workflow in WORKFLOWS:
        having = [bundle for bundle, w in found if w == workflow]
        if having:
            cells.append(workflow if len(having) == len(bundles) else f"{workflow} ({', '.join(having)})")
    return ", ".join(cells)


def render_reference(
    configs: Mapping[str, Mapping[str, Mapping[str, Any]]],
    ids: BundleIds,
    line_counts: Mapping[str, Mapping[str, int]] | None = None,
) -> str:
    """The generated part of the bundle reference page, in Markdown.

    Args:
        configs: from :func:`read_configs`.
        ids: from :func:`read_bundle_ids`, already checked with :func:`check_bundle_ids`.
        line_counts: from :func:`read_line_counts`; a table of the configs' sizes when given.
    """
    where = _where(configs)
    bundles = list(configs)
    first = configs[bundles[0]]["train"]
    lines = []
    recipes = first.get("recipes")
    if isinstance(recipes, Mapping) and recipes:
        names = list(recipes)
        settings = list(dict.fromkeys(k for recipe in recipes.values() for k in recipe))
        lines += [
            "## The recipes",
            "",
            "`--recipe` picks a column of `recipes` (from `train.json`); an override of one setting wins over it.",
            "",
            "| setting | " + " | ".join(f"`{name}`" for name in names) + " |",
            "|---|" + "---|" * len(names),
        ]
        for setting in settings:
            row = [_show(recipes[name].get(setting, "")) for name in names]
            lines.append(f"| `{setting}` | " + " | ".join(row) + " |")
        lines.append("")
    trained = first.get("trained_settings")
    if isinstance(trained, Mapping):
        lines += [
            "The model card of every weights file records "
            + ", ".join(f"`{k}`" for k in trained)
            + " (`trained_settings`); evaluation and inference read them from the card of the weights they load, "
            "and refuse an override that contradicts it unless `--force_overrides true`.",
            "",
        ]
    for title, section in ids.sections.items():
        rows = [key for key in section if key in where]
        if not rows:
            continue
        lines += [f"## {title}", "", "| id | in | default | meaning |", "|---|---|---|---|"]
        for key in rows:
            found = where[key]
            lines.append(
                f"| `{key}` | {_configs_cell(found, bundles)} | {_default(configs, key, found)} | "
                f"{_escape_pipes(section[key])} |"
            )
        lines.append("")
    internal = [key for key in ids.internal if key in where]
    if internal:
        lines += [
            "## Internal wiring",
            "",
            "These ids connect the objects above; they are overridable like any other, but seldom need to be: "
            + ", ".join(f"`{key}`" for key in internal)
            + ".",
            "",
        ]
    if line_counts:
        lines += [
            "## Size of the generated configs",
            "",
            "| bundle | " + " | ".join(f"`{w}.json`" for w in WORKFLOWS) + " | lines in all |",
            "|---|" + "---|" * (len(WORKFLOWS) + 1),
        ]
        for bundle, counts in line_counts.items():
            cells = [f"{counts[w]:,}" for w in WORKFLOWS]
            lines.append(f"| `{bundle}` | " + " | ".join(cells) + f" | {sum(counts.values()):,} |")
        lines.append("")
    return "\n".join(lines)


def read_line_counts(bundles_dir: str | Path, bundles: list[str]) -> dict[str, dict[str, int]]:
    """Lines of each generated config: {bundle: {workflow: lines}}."""
    bundles_dir = Path(bundles_dir)
    return {
        bundle: {
            w: len((bundles_dir / bundle / f"{w}.json").read_text(encoding="utf-8").splitlines()) for w in WORKFLOWS
        }
        for bundle in bundles
    }


def _root(config: Any) -> Path:
    return Path(config.config_file_path).resolve().parent


def _checked(root: Path) -> tuple[dict[str, dict[str, dict[str, Any]]], BundleIds]:
    """Read and check the configs and meanings under ``root``; raise MkDocs' ``PluginError`` on any problem."""
    from mkdocs.exceptions import PluginError  # here, so that the test suite runs the check without MkDocs

    try:
        configs = read_configs(root / "bundles")
        ids = read_bundle_ids(root / MEANINGS_FILE)
    except (OSError, ValueError) as e:
        raise PluginError(f"bundle reference: {e}") from e
    problems = check_bundle_ids(configs, ids)
    if problems:
        raise PluginError("bundle reference is out of date with the configs:\n  " + "\n  ".join(problems))
    return configs, ids


def on_pre_build(config: Any) -> None:
    """Fail the build early when the meanings and the configs disagree."""
    _checked(_root(config))


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Replace the marker of the reference page with the tables generated from the configs."""
    if page.file.src_uri != PAGE:
        return markdown
    from mkdocs.exceptions import PluginError

    if MARKER not in markdown:
        raise PluginError(f"{PAGE} has lost its marker line: {MARKER}")
    root = _root(config)
    configs, ids = _checked(root)
    line_counts = read_line_counts(root / "bundles", list(configs))
    return markdown.replace(MARKER, render_reference(configs, ids, line_counts))


def on_serve(server: Any, config: Any, builder: Any) -> Any:
    """``mkdocs serve``: rebuild when a config or the meanings change."""
    root = _root(config)
    server.watch(str(root / "bundles"))
    server.watch(str(root / MEANINGS_FILE))
    return server
