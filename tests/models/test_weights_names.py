"""How evaluation and inference reports name the weights they used."""

from __future__ import annotations

import pytest

from pipeline.models import weights_names


@pytest.mark.parametrize(
    "weights, names",
    [
        (None, None),
        ("outputs/cenet/latest/models/model.pt", "model.pt"),
        (["a/models/snapshot_1.pt", "a/models/snapshot_2.pt"], ["snapshot_1.pt", "snapshot_2.pt"]),
        (
            ["outputs/cenet/fold0/latest/models/model.pt", "outputs/cenet/fold1/latest/models/model.pt"],
            ["fold0/latest/models/model.pt", "fold1/latest/models/model.pt"],
        ),
        (["x/model.pt", "y/models/model.pt"], ["x/model.pt", "models/model.pt"]),
    ],
)
def test_weights_names_tell_ensemble_members_apart(weights, names):
    assert weights_names(weights) == names
