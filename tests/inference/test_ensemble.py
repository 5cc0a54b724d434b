"""EnsembleInferer averages probabilities over networks and flips; load_ensemble loads one copy per weights file."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser
from monai.inferers import SimpleInferer, SlidingWindowInferer
from torch import nn

from pipeline.inference import EnsembleInferer
from pipeline.models import load_ensemble

REPO = Path(__file__).resolve().parents[2]


class Constant(nn.Module):
    """Logit ``value`` everywhere."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full_like(x[:, :1], self.value)


class _Fixed(nn.Module):
    """The same logits whatever the input."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits


def _asymmetric() -> nn.Module:
    torch.manual_seed(0)
    return nn.Conv2d(1, 1, 3, padding=1).eval()  # random 3x3 kernel: not mirror-symmetric


def test_single_network_without_flips_is_the_plain_inferer():
    x = torch.rand(2, 1, 16, 16)
    net = _asymmetric()
    torch.testing.assert_close(EnsembleInferer(SimpleInferer())(x, net), net(x))


def test_structures_with_sides_are_never_mirrored_left_right():
    """A left-right mirrored input shows the right lung where the left one lies: flip TTA mirrors up-down only."""
    assert EnsembleInferer(SimpleInferer(), flip_tta=True).flips == ((), (3,), (2,))
    assert EnsembleInferer(SimpleInferer(), flip_tta=True, sides=True).flips == ((), (2,))
    assert EnsembleInferer(SimpleInferer(), flip_tta=False, sides=True).flips == ((),)


def test_networks_average_probabilities_not_masks():
    x = torch.rand(1, 1, 8, 8)
    logits = EnsembleInferer(SimpleInferer(), [Constant(2.0), Constant(-1.0), Constant(-1.0)])(x)
    mean = (torch.sigmoid(torch.tensor(2.0)) + 2 * torch.sigmoid(torch.tensor(-1.0))) / 3
    torch.testing.assert_close(torch.sigmoid(logits), torch.full_like(logits, mean.item()))
    # a majority vote of the masks would say background everywhere; the mean probability is 0.427 here
    assert 0.4 < mean < 0.5


def test_flip_tta_maps_each_output_back():
    x = torch.rand(2, 1, 12, 10)
    net = _asymmetric()
    expected = (
        torch.sigmoid(net(x)) + torch.sigmoid(net(x.flip(3)).flip(3)) + torch.sigmoid(net(x.flip(2)).flip(2))
    ) / 3
    with torch.no_grad():
        got = torch.sigmoid(EnsembleInferer(SimpleInferer(), flip_tta=True)(x, net))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_wraps_sliding_window():
    x = torch.rand(1, 1, 40, 24)
    net = _asymmetric()
    inferer = EnsembleInferer(SlidingWindowInferer(roi_size=(16, 16), overlap=0.5), [net, net], flip_tta=True)
    with torch.no_grad():
        assert inferer(x).shape == (1, 1, 40, 24)


def test_load_ensemble(tmp_path):
    nets = [_asymmetric() for _ in range(2)]
    with torch.no_grad():
        nets[1].weight.mul_(-1)
    paths = [tmp_path / f"fold{i}.pt" for i in range(2)]
    for net, path in zip(nets, paths, strict=True):
        torch.save(net.state_dict(), path)
    loaded = load_ensemble(nn.Conv2d(1, 1, 3, padding=1), paths)
    for net, copy in zip(nets, loaded, strict=True):
        torch.testing.assert_close(copy.weight, net.weight)
    assert loaded[0] is not loaded[1]
    torch.save(nn.Conv2d(1, 2, 3).state_dict(), tmp_path / "other.pt")
    with pytest.raises(ValueError, match=r"other\.pt does not fit Conv2d"):
        load_ensemble(nn.Conv2d(1, 1, 3, padding=1), [paths[0], tmp_path / "other.pt"])
    with pytest.raises(ValueError, match="at least one"):
        load_ensemble(nn.Conv2d(1, 1, 3), [])
    # a glob pattern, as for cosine-annealing snapshots: every match, sorted by name
    by_pattern = load_ensemble(nn.Conv2d(1, 1, 3, padding=1), [str(tmp_path / "fold?.pt")])
    assert len(by_pattern) == 2
    torch.testing.assert_close(by_pattern[1].weight, nets[1].weight)
    with pytest.raises(ValueError, match=r"snapshot_\*\.pt' matches no file"):
        load_ensemble(nn.Conv2d(1, 1, 3), [str(tmp_path / "snapshot_*.pt")])


@pytest.mark.parametrize("channels_last", [True, False])
def test_load_ensemble_in_channels_last(channels_last, tmp_path):
    """Channels-last weights (the CPU's and GPU's faster convolutions) give the same logits on a contiguous input."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 1, 3, padding=1))
    torch.save(net.state_dict(), tmp_path / "model.pt")
    (loaded,) = load_ensemble(net, [tmp_path / "model.pt"], channels_last=channels_last)
    assert loaded[0].weight.is_contiguous(memory_format=torch.channels_last) is channels_last
    x = torch.rand(2, 2, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("config", ["bundles/unet/inference.json", "bundles/unet/evaluate.json"])
def test_bundles_take_folds_and_flip_tta_from_the_command_line(config, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    parser = ConfigParser()
    parser.read_config("bundles/unet/train.json")
    paths = []
    for fold in range(2):
        torch.manual_seed(fold)
        paths.append(str(tmp_path / f"fold{fold}.pt"))
        torch.save(parser.get_parsed_content("network_def", instantiate=True, lazy=False).state_dict(), paths[-1])
    parser = ConfigParser()
    parser.read_config(config)
    parser.update({"checkpoints": paths, "flip_tta": True, "device": "cpu"})
    inferer = parser.get_parsed_content("inferer")
    assert isinstance(inferer, EnsembleInferer) and len(inferer.networks) == 2
    assert inferer.flips == ((), (2,))  # the default data's lungs have sides: up-down only
    assert inferer.networks[0] is parser.get_parsed_content("network")


def test_several_structures_average_softmax_probabilities():
    """With ``softmax``, the ensemble averages softmax probabilities and returns their log: softmax gives them back."""
    logits = [torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(k)) for k in range(3)]
    networks = [_Fixed(x) for x in logits]
    out = EnsembleInferer(SimpleInferer(), networks, softmax=True)(torch.zeros(2, 1, 8, 8))
    expected = torch.stack([torch.softmax(x, dim=1) for x in logits]).mean(0)
    assert torch.allclose(torch.softmax(out, dim=1), expected, atol=1e-6)
