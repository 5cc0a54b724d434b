"""The training loader raises what its background thread met, instead of ending the epoch early without a word."""

from __future__ import annotations

import json

import pytest
from monai.data import Dataset

from pipeline.demo import write_demo_dataset
from pipeline.intake import ThreadDataLoader


def _fails_on_5(x: int) -> int:
    if x == 5:
        raise ValueError("item 5 cannot be augmented")
    return x


@pytest.mark.parametrize("batch_size, buffer_size", [(1, 1), (2, 1), (2, 3), (4, 2)])
def test_a_drawing_error_is_raised_after_the_batches_before_it(batch_size: int, buffer_size: int) -> None:
    loader = ThreadDataLoader(
        Dataset(list(range(10)), transform=_fails_on_5), batch_size=batch_size, buffer_size=buffer_size
    )
    seen = []
    with pytest.raises(RuntimeError) as raised:
        for batch in loader:
            seen.extend(batch.tolist())
    assert "item 5 cannot be augmented" in str(raised.value.__cause__)
    assert seen == list(range(5 - 5 % batch_size))  # every whole batch before the bad item, nothing after


def test_a_clean_epoch_is_whole_and_repeatable() -> None:
    loader = ThreadDataLoader(Dataset(list(range(7))), batch_size=3)
    assert [b.tolist() for b in loader] == [[0, 1, 2], [3, 4, 5], [6]]
    assert [b.tolist() for b in loader] == [[0, 1, 2], [3, 4, 5], [6]]


def test_training_with_a_failing_augmentation_fails_with_its_reason(bundle_workflow, tmp_path) -> None:
    dataset = write_demo_dataset(tmp_path / "data", num_cases=6, size=64, val_fraction=0.34, seed=5)
    failing = {"_target_": "Lambdad", "keys": "image", "func": "$lambda x: x[10]"}  # a 1-channel image has no x[10]
    overrides = {"train#augmentation": [failing], "output_bias": False}  # the bias would draw items before training
    workflow = bundle_workflow("train", dataset_dir=str(dataset), output_dir=str(tmp_path / "out"), **overrides)
    workflow.initialize()
    with pytest.raises(RuntimeError) as raised:
        workflow.run()
    chain, error = [], raised.value
    while error is not None:
        chain.append(str(error))
        error = error.__cause__
    assert any("index 10 is out of bounds" in message for message in chain), chain
    (run,) = (tmp_path / "out" / "runs").iterdir()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["epochs_run"] == 0
