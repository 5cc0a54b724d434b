"""init_output_bias: every bundle network starts at the training foreground prior, and nothing else changes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser

from pipeline.networks import foreground_prior, init_output_bias

REPO = Path(__file__).resolve().parents[2]
# the smallest input side each network takes
SIZES = {"cenet": 192, "aspp": 64, "inception_unet": 64, "unet": 64}


def _network(bundle: str) -> torch.nn.Module:
    parser = ConfigParser({"in_channels": 1, "out_channels": 1})
    parser["network_def"] = json.loads((REPO / "bundles" / bundle / "model.json").read_text())["network_def"]
    return parser.get_parsed_content("network_def")


def _samples(size: int, fraction: float, count: int = 4) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    samples = []
    for _ in range(count):
        label = (torch.rand(1, size, size, generator=generator) < fraction).float()
        samples.append({"image": torch.rand(1, size, size, generator=generator) + label, "label": label})
    return samples


@pytest.mark.parametrize("fraction", [0.1, 0.8])
@pytest.mark.parametrize("bundle", list(SIZES))
def test_mean_probability_is_the_prior(bundle, fraction):
    torch.manual_seed(0)
    network = _network(bundle)
    samples = _samples(SIZES[bundle], fraction)
    before = {k: v.clone() for k, v in network.state_dict().items()}
    prior = init_output_bias(network, samples)
    changed = [k for k, v in network.state_dict().items() if not torch.equal(v, before[k])]
    assert len(changed) == 1 and changed[0].endswith("bias")  # BatchNorm statistics restored, weights untouched
    images = torch.stack([s["image"] for s in samples])
    network.train()
    with torch.no_grad():
        mean = torch.sigmoid(network(images)).mean().item()
    expected = foreground_prior(torch.stack([s["label"] for s in samples])).item()
    assert prior == pytest.approx([expected]) and mean == pytest.approx(expected, abs=2e-3)


def test_prior_is_kept_away_from_zero_and_one():
    assert foreground_prior(torch.zeros(2, 1, 8, 8)).item() == pytest.approx(1e-3)
    assert foreground_prior(torch.ones(2, 1, 8, 8)).item() == pytest.approx(1 - 1e-3)


def test_errors():
    with pytest.raises(ValueError, match="at least one training sample"):
        init_output_bias(torch.nn.Conv2d(1, 1, 1), [])
    with pytest.raises(ValueError, match="no output convolution with a bias"):
        init_output_bias(torch.nn.Conv2d(1, 1, 1, bias=False), _samples(8, 0.5))


@pytest.mark.parametrize("enabled", [False, "false", "off"])
def test_output_bias_off_leaves_the_network_as_it_is(enabled):
    network = _network("unet")
    before = {k: v.clone() for k, v in network.state_dict().items()}
    assert init_output_bias(network, _samples(64, 0.3), enabled=enabled) is None
    assert all(torch.equal(v, before[k]) for k, v in network.state_dict().items())


@pytest.mark.parametrize("bundle", list(SIZES))
def test_softmax_channels_start_at_their_shares(bundle):
    """Several structures: the mean softmax probability of each channel is its share of the pixels."""
    torch.manual_seed(0)
    size = SIZES[bundle]
    parser = ConfigParser({"in_channels": 1, "out_channels": 4})
    parser["network_def"] = json.loads((REPO / "bundles" / bundle / "model.json").read_text())["network_def"]
    network = parser.get_parsed_content("network_def")
    generator = torch.Generator().manual_seed(1)
    samples = []
    for _ in range(4):
        index = torch.randint(0, 4, (size, size), generator=generator)
        index[index == 3] = 0  # background takes half, structure 3 none (kept away from zero)
        label = torch.nn.functional.one_hot(index, 4).permute(2, 0, 1).float()
        samples.append({"image": torch.rand(1, size, size, generator=generator), "label": label})
    prior = init_output_bias(network, samples)
    network.train()
    with torch.no_grad():
        shares = torch.softmax(network(torch.stack([s["image"] for s in samples])), dim=1).mean(dim=(0, 2, 3))
    assert shares.tolist() == pytest.approx(prior, abs=5e-3) and sum(prior) == pytest.approx(1.0)
