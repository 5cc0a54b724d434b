"""Label maps <-> one channel per structure: the targets of training and the label maps inference writes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from pipeline.transforms import ChannelsToLabels, ChannelsToLabelsd, LabelToChannels, LabelToChannelsd

LABELS = torch.tensor([[[0, 1, 2], [3, 3, 0]]], dtype=torch.float32)  # (1, 2, 3): background and three structures


@pytest.mark.parametrize("container", [torch.as_tensor, np.asarray, MetaTensor])
def test_several_structures_become_one_hot_and_back(container):
    onehot = LabelToChannels([1, 2, 3])(container(LABELS))
    assert type(onehot) is type(container(LABELS)) and tuple(onehot.shape) == (4, 2, 3)
    assert torch.equal(torch.as_tensor(onehot).sum(0), torch.ones(2, 3))  # exactly one channel per pixel
    back = ChannelsToLabels([1, 2, 3])(onehot)
    assert torch.equal(torch.as_tensor(back), LABELS)


def test_values_need_not_be_contiguous():
    labels = torch.tensor([[[0, 10, 20]]], dtype=torch.float32)
    onehot = LabelToChannels([{"value": 20}, {"value": 10}])(labels)  # structures as dicts, any order
    assert onehot[:, 0, 1].tolist() == [0, 1, 0] and onehot[:, 0, 2].tolist() == [0, 0, 1]
    assert ChannelsToLabels([10, 20])(onehot).tolist() == labels.tolist()


@pytest.mark.parametrize(
    "mask, expected",
    [
        (torch.tensor([[[0.0, 255.0]]]), [0.0, 1.0]),  # a {0, 255} mask: binarised as BinarizeMask does
        (torch.tensor([[[3.0, 250.0]]]), [0.0, 1.0]),  # JPEG noise
        (torch.tensor([[[0.0, 1.0]]]), [0.0, 1.0]),
    ],
)
def test_one_structure_is_a_binary_mask(mask, expected):
    out = LabelToChannels([1])(mask)
    assert out.shape == (1, 1, 2) and out.flatten().tolist() == expected


@pytest.mark.parametrize(
    "labels, message",
    [
        (torch.tensor([[[0.0, 4.0]]]), "values 4 are not among"),
        (torch.tensor([[[0.0, 1.5]]]), "values 1.5 are not among"),
        (torch.tensor([[[0.0, 1.0]], [[0.0, 2.0]]]), "different channels"),
    ],
)
def test_a_label_map_that_does_not_fit_is_refused(labels, message):
    with pytest.raises(ValueError, match=message):
        LabelToChannels([1, 2, 3])(labels)


@pytest.mark.parametrize("structures", [[], [0], [1, 1], [300]])
def test_bad_structures_are_refused(structures):
    with pytest.raises(ValueError, match="distinct label values"):
        LabelToChannels(structures)


def test_channels_to_labels_of_probabilities_and_empty_pixels():
    probabilities = torch.tensor([[[0.7, 0.1, 0.0]], [[0.2, 0.8, 0.0]], [[0.1, 0.1, 0.0]]])  # (3, 1, 3)
    assert ChannelsToLabels([5, 9])(probabilities).flatten().tolist() == [0.0, 5.0, 0.0]  # all-zero: background
    assert ChannelsToLabels([2])(torch.tensor([[[0.2, 0.9]]])).flatten().tolist() == [0.0, 2.0]
    with pytest.raises(ValueError, match="has 3 channel"):
        ChannelsToLabels([5, 9])(probabilities[:2])


def test_dictionary_wrappers():
    data = {"label": LABELS.clone(), "pred": LabelToChannels([1, 2, 3])(LABELS)}
    out = ChannelsToLabelsd("pred", [1, 2, 3])(LabelToChannelsd("label", [1, 2, 3])(data))
    assert out["label"].shape == (4, 2, 3) and torch.equal(out["pred"], LABELS)
