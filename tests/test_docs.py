"""The bundle reference cannot drift: every top-level config id has a meaning (or is internal), and no meaning is stale.

The documentation build runs the same check (``docs/hooks/bundle_reference.py``, an MkDocs hook); this test runs it
without MkDocs, so that the suite catches a config id added or removed without its meaning.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HOOK = REPO / "docs" / "hooks" / "bundle_reference.py"


def _load_hook():
    spec = importlib.util.spec_from_file_location("bundle_reference", HOOK)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


hook = _load_hook()


@pytest.fixture(scope="module")
def configs():
    return hook.read_configs(REPO / "bundles")


@pytest.fixture(scope="module")
def ids():
    return hook.read_bundle_ids(REPO / hook.MEANINGS_FILE)


def test_every_config_id_has_a_meaning_and_every_meaning_an_id(configs, ids):
    problems = hook.check_bundle_ids(configs, ids)
    assert not problems, "\n".join(problems)


def test_all_bundles_and_workflows_are_read(configs):
    assert {"aspp", "cenet", "inception_unet", "unet"} <= set(configs)
    assert all(set(by_workflow) == set(hook.WORKFLOWS) for by_workflow in configs.values())


def test_the_page_shows_every_described_id(configs, ids):
    page = hook.render_reference(configs, ids, hook.read_line_counts(REPO / "bundles", list(configs)))
    for key in ids.meanings():
        assert f"| `{key}` |" in page
    assert "## Size of the generated configs" in page
    assert hook.MARKER in (REPO / "docs" / hook.PAGE).read_text(encoding="utf-8")


def _write(tmp_path: Path, sections: dict, internal: list) -> Path:
    path = tmp_path / "bundle_ids.yaml"
    path.write_text(json.dumps({"sections": sections, "internal": internal}), encoding="utf-8")  # JSON is YAML
    return path


TOY = {"cenet": {"train": {"epochs": 10, "network": "$x"}, "evaluate": {"split": "val"}, "inference": {}}}


@pytest.mark.parametrize(
    ("sections", "internal", "expected"),
    [
        ({"A": {"epochs": "Maximum epochs.", "split": "Cases scored."}}, ["network"], []),
        ({"A": {"epochs": "Maximum epochs."}}, ["network"], ["'split' (evaluate.json) has no meaning"]),
        ({"A": {"epochs": "x", "split": "y", "gone": "z"}}, ["network"], ["'gone' (section 'A') is in no generated"]),
        ({"A": {"epochs": "x", "split": "y"}}, ["network", "removed"], ["'removed' (internal) is in no generated"]),
        ({"A": {"epochs": "x", "split": "y"}}, ["network", "epochs"], ["'epochs' is named 2 times"]),
        ({"A": {"epochs": "", "split": "y"}}, ["network"], ["'epochs' in section 'A' has no meaning"]),
    ],
)
def test_the_check_names_each_problem(tmp_path, sections, internal, expected):
    problems = hook.check_bundle_ids(TOY, hook.read_bundle_ids(_write(tmp_path, sections, internal)))
    assert len(problems) == len(expected)
    for problem, start in zip(problems, expected, strict=True):
        assert problem.startswith(start), problem


def test_a_key_written_twice_is_refused(tmp_path):
    path = tmp_path / "bundle_ids.yaml"
    path.write_text("sections:\n  A:\n    epochs: one\n    epochs: two\ninternal: []\n", encoding="utf-8")
    with pytest.raises(ValueError, match="written twice"):
        hook.read_bundle_ids(path)


def test_defaults_are_shown_as_written(tmp_path):
    configs = {
        "cenet": {"train": {"epochs": 10, "window": [-1000, 400]}, "evaluate": {"window": "$card"}, "inference": {}},
        "unet": {"train": {"epochs": 30, "window": [-1000, 400]}, "evaluate": {"window": "$card"}, "inference": {}},
    }
    ids = hook.read_bundle_ids(_write(tmp_path, {"A": {"epochs": "Epochs.", "window": "Window."}}, []))
    page = hook.render_reference(configs, ids)
    assert "| `epochs` | train | cenet: `10`<br>unet: `30` | Epochs. |" in page
    assert "| `window` | train, evaluate | train: `[-1000, 400]`<br>evaluate: `$card` | Window. |" in page
