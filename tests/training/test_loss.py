"""The loss fits the structures: sigmoid Dice + BCE for one, softmax Dice + CE for several."""

from __future__ import annotations

import pytest
import torch

from pipeline.training import segmentation_loss


@pytest.mark.parametrize("count, sigmoid, softmax", [(1, True, False), (3, False, True)])
def test_activation_follows_the_structures(count, sigmoid, softmax):
    loss = segmentation_loss([{"value": v} for v in range(1, count + 1)], lambda_dice=0.5)
    assert loss.dice.sigmoid is sigmoid and loss.dice.softmax is softmax and loss.lambda_dice == 0.5


def test_soft_one_hot_targets_of_several_structures():
    """Resized one-hot targets are soft: the softmax loss takes them as class probabilities."""
    target = torch.softmax(torch.randn(2, 4, 8, 8), dim=1)
    logits = torch.randn(2, 4, 8, 8, requires_grad=True)
    value = segmentation_loss([{"value": 1}, {"value": 2}, {"value": 3}])(logits, target)
    value.backward()
    assert torch.isfinite(value) and logits.grad is not None
