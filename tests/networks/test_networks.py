"""Contract tests for the segmentation networks: one table over every network, CE-Net's layout, weight loading.

Every network in the table must, for 1 or 3 input and 1 or 2 output channels: map ``(N, C, H, W)`` to finite,
non-constant float logits ``(N, out, H, W)``; give finite gradients to every trainable parameter; run in eval mode
on a batch of one; and (for this package's 2D-only networks) refuse bad sizes and ``spatial_dims=3`` with a
``ValueError`` that says what it takes. Sizes are the smallest each network accepts, to keep CPU runs short.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from monai.networks.nets import UNet
from torch import nn

from pipeline.models import load_state_dict_file
from pipeline.networks import ASPPNet, CENet, DACBlock, InceptionUNet, RMPBlock, probe_input_size

# reference.md section 2: "about 29.0 M parameters" (1 input channel, 1 output channel).
CENET_REFERENCE_PARAMS = 29.0e6


@dataclass(frozen=True)
class NetCase:
    """One row of the contract table.

    Attributes:
        build: ``build(spatial_dims, in_channels, out_channels)`` returns the network.
        shape: a small valid ``(H, W)``; H != W where that is cheap, so that a swapped axis shows.
        bad_shapes: ``(H, W)`` sizes the network must refuse; empty when it has no size check.
        size_rule: text the refusal must contain, naming the sizes it takes.
        two_d_only: whether ``spatial_dims=3`` must raise ``ValueError``.
    """

    build: Callable[[int, int, int], nn.Module]
    shape: tuple[int, int]
    bad_shapes: tuple[tuple[int, int], ...] = ()
    size_rule: str = ""
    two_d_only: bool = True


def _unet(spatial_dims: int, in_channels: int, out_channels: int) -> nn.Module:
    """MONAI's residual UNet as ``bundles/unet`` configures it."""
    return UNet(
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        out_channels=out_channels,
        channels=(16, 32, 64, 128, 256),
        strides=(2, 2, 2, 2),
        num_res_units=2,
        norm="batch",
    )


CASES = {
    "CENet": NetCase(
        build=CENet,
        shape=(192, 192),  # the minimum: RMP's 6x6 pool needs a 6x6 map at 1/32
        bad_shapes=((160, 160), (192, 200)),  # a multiple of 32 below 192; at least 192 but no multiple of 32
        size_rule="multiples of 32 and at least 192",
    ),
    "ASPPNet": NetCase(build=ASPPNet, shape=(64, 96), bad_shapes=((64, 80),), size_rule="multiples of 32"),
    "InceptionUNet": NetCase(build=InceptionUNet, shape=(64, 96), bad_shapes=((64, 72),), size_rule="multiples of 16"),
    # MONAI's UNet is n-dimensional and does not check sizes: it joins only the shape and gradient rows.
    "UNet": NetCase(build=_unet, shape=(64, 96), two_d_only=False),
}
CHANNELS = [(1, 1), (1, 2), (3, 1), (3, 2)]
TABLE = [pytest.param(name, cin, cout, id=f"{name}-in{cin}-out{cout}") for name in CASES for cin, cout in CHANNELS]
SIZE_CHECKED = [
    pytest.param(name, shape, id=f"{name}-{shape[0]}x{shape[1]}") for name in CASES for shape in CASES[name].bad_shapes
]
TWO_D_ONLY = [name for name in CASES if CASES[name].two_d_only]


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    """Run this module on one intra-op thread, then restore the setting.

    These tensors are small, so a second thread gains little; and when the two cores are shared (another test
    worker, a training run), OpenMP threads waiting on each other made this file 5-40x slower in measurement.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _check_logits(y: torch.Tensor, expected_shape: tuple[int, ...]) -> None:
    """Assert float logits of the expected shape, all finite and not all equal."""
    assert tuple(y.shape) == expected_shape
    assert y.dtype == torch.float32
    assert torch.isfinite(y).all(), "non-finite logits"
    assert y.max() > y.min(), "constant output"


@pytest.mark.parametrize(("name", "in_channels", "out_channels"), TABLE)
def test_train_forward_backward(name: str, in_channels: int, out_channels: int) -> None:
    """Train mode, batch 2: logits ``(N, out, H, W)``, then finite gradients on every trainable parameter."""
    case = CASES[name]
    net = case.build(2, in_channels, out_channels).train()
    x = torch.randn(2, in_channels, *case.shape)
    y = net(x)
    _check_logits(y, (2, out_channels, *case.shape))

    y.square().mean().backward()
    trainable = [(n, p) for n, p in net.named_parameters() if p.requires_grad]
    assert trainable
    no_grad = [n for n, p in trainable if p.grad is None]
    assert not no_grad, f"parameters without a gradient: {no_grad[:5]}"
    not_finite = [n for n, p in trainable if not torch.isfinite(p.grad).all()]
    assert not not_finite, f"non-finite gradients: {not_finite[:5]}"
    assert any(p.grad.abs().sum() > 0 for _, p in trainable), "all gradients are zero"


@pytest.mark.parametrize(("name", "in_channels", "out_channels"), TABLE)
def test_eval_batch_of_one(name: str, in_channels: int, out_channels: int) -> None:
    """Eval mode on a single image (batch norm on running statistics) gives the same contract."""
    case = CASES[name]
    net = case.build(2, in_channels, out_channels).eval()
    with torch.no_grad():
        y = net(torch.randn(1, in_channels, *case.shape))
    _check_logits(y, (1, out_channels, *case.shape))


@pytest.mark.parametrize("name", list(CASES))
def test_channels_last_weights_give_the_same_logits(name: str) -> None:
    """Channels-last weights (the CPU's and GPU's default) compute the same logits from a contiguous 1-channel image,
    and the inception blocks keep their maps channels-last (where the stride-1 max-pool is fast)."""
    case = CASES[name]
    net = case.build(2, 1, 2).eval()
    x = torch.randn(2, 1, *case.shape)
    with torch.no_grad():
        reference = net(x)
        net = net.to(memory_format=torch.channels_last)
        formats = []
        hooks = [
            m.register_forward_hook(lambda m, i, o: formats.append(o.is_contiguous(memory_format=torch.channels_last)))
            for m in net.modules()
            if type(m).__name__ == "InceptionBlock"
        ]
        torch.testing.assert_close(net(x), reference, rtol=1e-4, atol=1e-4)
    for hook in hooks:
        hook.remove()
    assert all(formats) and (bool(formats) is (name == "InceptionUNet"))


@pytest.mark.parametrize(("name", "shape"), SIZE_CHECKED)
def test_bad_size_names_valid_sizes(name: str, shape: tuple[int, int]) -> None:
    """A size the network cannot take fails before any layer runs, with the rule and the offending shape."""
    case = CASES[name]
    net = case.build(2, 1, 1).eval()
    with torch.no_grad(), pytest.raises(ValueError, match=re.escape(case.size_rule)) as excinfo:
        net(torch.zeros(1, 1, *shape))
    assert f"(1, 1, {shape[0]}, {shape[1]})" in str(excinfo.value)


@pytest.mark.parametrize("name", TWO_D_ONLY)
def test_rejects_3d(name: str) -> None:
    """The 2D-only networks refuse ``spatial_dims=3`` and say what they got."""
    with pytest.raises(ValueError, match=r"spatial_dims must be 2; got 3"):
        CASES[name].build(3, 1, 1)


@pytest.mark.parametrize("name", TWO_D_ONLY)
def test_wrong_channel_count(name: str) -> None:
    """An input with other than ``in_channels`` channels is refused with the expected count."""
    case = CASES[name]
    net = case.build(2, 1, 1).eval()
    with torch.no_grad(), pytest.raises(ValueError, match=r"built for 1 input channel"):
        net(torch.zeros(1, 3, *case.shape))


@pytest.mark.parametrize("name", list(CASES))
def test_torchscript(name: str) -> None:
    """``torch.jit.script`` compiles the network (MONAI's ``ckpt_export`` scripts it) and matches eager mode."""
    case = CASES[name]
    net = case.build(2, 1, 2).eval()
    scripted = torch.jit.script(net)
    x = torch.randn(1, 1, *case.shape)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), net(x))


def test_cenet_parameter_count() -> None:
    """CE-Net with 1 input and 1 output channel has the paper's ~29.0 M parameters (within 1%)."""
    count = sum(p.numel() for p in CENet(2, 1, 1).parameters())
    assert abs(count - CENET_REFERENCE_PARAMS) / CENET_REFERENCE_PARAMS < 0.01, count


def test_cenet_layout() -> None:
    """CE-Net's layers have the channels, dilations, pool sizes and kernels of reference.md section 2."""
    net = CENet(2, 1, 2)
    assert net.encoder.out_channels == (64, 128, 256, 512)
    assert [len(getattr(net.encoder, f"layer{i}")) for i in range(1, 5)] == [3, 4, 6, 3]  # ResNet-34
    stem = net.encoder.conv1
    assert (stem.kernel_size, stem.stride) == ((7, 7), (2, 2))

    dac = net.decoder.dac
    dilated = [dac.dilate_1, dac.dilate_3, dac.dilate_5]
    assert [(c.kernel_size, c.dilation) for c in dilated] == [((3, 3), (1, 1)), ((3, 3), (3, 3)), ((3, 3), (5, 5))]
    assert dac.conv_1x1.kernel_size == (1, 1)
    assert all(c.in_channels == c.out_channels == 512 for c in [*dilated, dac.conv_1x1])

    rmp = net.decoder.rmp
    assert [(p.kernel_size, p.stride) for p in rmp.pools] == [(2, 2), (3, 3), (5, 5), (6, 6)]
    assert (rmp.conv.in_channels, rmp.conv.out_channels, rmp.out_channels) == (512, 1, 516)

    decoders = [net.decoder.decoder_4, net.decoder.decoder_3, net.decoder.decoder_2, net.decoder.decoder_1]
    widths = [(d.conv_1.conv.in_channels, d.conv_1.conv.out_channels, d.conv_3.conv.out_channels) for d in decoders]
    assert widths == [(516, 129, 256), (256, 64, 128), (128, 32, 64), (64, 16, 64)]
    for d in decoders:
        deconv = d.deconv_2.conv
        assert isinstance(deconv, nn.ConvTranspose2d)
        assert (deconv.kernel_size, deconv.stride) == ((3, 3), (2, 2))
        assert isinstance(d.conv_1.adn.N, nn.BatchNorm2d) and isinstance(d.conv_3.adn.A, nn.ReLU)

    head = net.head
    assert isinstance(head.deconv_1.conv, nn.ConvTranspose2d)
    assert (head.deconv_1.conv.kernel_size, head.deconv_1.conv.stride) == ((4, 4), (2, 2))
    assert (head.deconv_1.conv.out_channels, head.conv_2.conv.out_channels) == (32, 32)
    assert (head.conv_3.conv.kernel_size, head.conv_3.conv.out_channels) == ((3, 3), 2)
    assert not hasattr(head.conv_3, "adn")  # a bare convolution: logits out, no norm or activation


def test_dac_wiring() -> None:
    """DAC computes ``x + relu(d1 x) + relu(c1 d3 x) + relu(c1 d3 d1 x) + relu(c1 d5 d3 d1 x)``."""
    dac = DACBlock(2, 8)
    for conv in (dac.dilate_1, dac.dilate_3, dac.dilate_5, dac.conv_1x1):
        nn.init.normal_(conv.bias, std=0.1)  # the block zeroes its biases; nonzero ones exercise the wiring
    x = torch.randn(2, 8, 20, 20)
    d1, d3, d5, c1 = dac.dilate_1, dac.dilate_3, dac.dilate_5, dac.conv_1x1
    with torch.no_grad():
        expected = x + F.relu(d1(x)) + F.relu(c1(d3(x))) + F.relu(c1(d3(d1(x)))) + F.relu(c1(d5(d3(d1(x)))))
        torch.testing.assert_close(dac(x), expected)


def test_rmp_wiring() -> None:
    """RMP concatenates the four pooled, squeezed, upsampled maps and then the input."""
    rmp = RMPBlock(2, 8)
    x = torch.randn(2, 8, 12, 18)
    with torch.no_grad():
        pooled = [
            F.interpolate(rmp.conv(F.max_pool2d(x, k, k)), size=(12, 18), mode="bilinear", align_corners=False)
            for k in (2, 3, 5, 6)
        ]
        torch.testing.assert_close(rmp(x), torch.cat([*pooled, x], dim=1))
    with pytest.raises(ValueError, match="at least 6"):
        rmp(torch.randn(1, 8, 5, 12))


def _small_net() -> nn.Module:
    """A tiny InceptionUNet: batch norm buffers and nested keys, at a fraction of the cost of CE-Net."""
    return InceptionUNet(2, 1, 2, features=(8, 8, 8, 8, 8))


def test_load_state_dict_round_trip(tmp_path: Path) -> None:
    """Weights and batch-norm statistics saved with ``torch.save`` come back into a fresh network exactly."""
    x = torch.randn(1, 1, 32, 48)
    source = _small_net().train()
    with torch.no_grad():
        source(torch.randn(2, 1, 32, 48))  # move the running statistics away from their initial values
    path = tmp_path / "weights.pt"
    torch.save(source.state_dict(), path)

    target = _small_net().eval()
    assert load_state_dict_file(target, path) is target
    source.eval()
    with torch.no_grad():
        torch.testing.assert_close(target(x), source(x), rtol=0, atol=0)


def test_load_state_dict_nested_checkpoint(tmp_path: Path) -> None:
    """A checkpoint dict that nests the weights under ``"state_dict"`` loads too."""
    source = _small_net()
    path = tmp_path / "checkpoint.pt"
    torch.save({"state_dict": source.state_dict(), "epoch": 3}, path)
    target = load_state_dict_file(_small_net(), os.fspath(path))
    for key, value in source.state_dict().items():
        torch.testing.assert_close(target.state_dict()[key], value)


def test_load_state_dict_missing_file(tmp_path: Path) -> None:
    """A path that does not exist is a ``FileNotFoundError`` naming the path."""
    path = tmp_path / "absent.pt"
    with pytest.raises(FileNotFoundError, match=re.escape(str(path))):
        load_state_dict_file(_small_net(), path)


def test_load_state_dict_mismatched_keys(tmp_path: Path) -> None:
    """Weights of another network fail with a ``ValueError`` naming the file and the keys that differ."""
    state = _small_net().state_dict()
    state["extra.weight"] = torch.zeros(1)
    del state["final_conv.conv.bias"]
    path = tmp_path / "other.pt"
    torch.save(state, path)
    with pytest.raises(ValueError, match=re.escape(str(path))) as excinfo:
        load_state_dict_file(_small_net(), path)
    assert "missing keys: final_conv.conv.bias" in str(excinfo.value)
    assert "unexpected keys: extra.weight" in str(excinfo.value)


def test_load_state_dict_mismatched_shapes(tmp_path: Path) -> None:
    """Same keys with other shapes (another channel count) fail with a ``ValueError`` naming the file."""
    path = tmp_path / "three_classes.pt"
    torch.save(InceptionUNet(2, 1, 3, features=(8, 8, 8, 8, 8)).state_dict(), path)
    with pytest.raises(ValueError, match=re.escape(str(path)) + r".*shape mismatch.*final_conv\.conv\.weight"):
        load_state_dict_file(_small_net(), path)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_load_state_dict_refuses_non_finite_weights(tmp_path: Path, bad: float) -> None:
    """Weights of a diverged training (all NaN, or one infinity) are refused, naming the file and a tensor."""
    state = _small_net().state_dict()
    state["final_conv.conv.weight"].view(-1)[0] = bad
    path = tmp_path / "diverged.pt"
    torch.save(state, path)
    target = _small_net()
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(
        ValueError, match=re.escape(str(path)) + r" holds non-finite weights .*final_conv\.conv\.weight"
    ):
        load_state_dict_file(target, path)
    assert all(torch.equal(v, before[k]) for k, v in target.state_dict().items())  # nothing was loaded


class _Payload:
    """An object whose unpickling would run code: ``weights_only=True`` must refuse it."""

    ran = False

    def __reduce__(self) -> tuple:
        return (_mark_ran, ())


def _mark_ran() -> None:
    _Payload.ran = True


@pytest.mark.parametrize("content", ["pickle", "truncated", "text"])
def test_load_state_dict_refuses_unsafe_or_broken_files(tmp_path: Path, content: str) -> None:
    """A pickle payload, a truncated file and a foreign file each raise ``ValueError`` naming the file."""
    path = tmp_path / f"{content}.pt"
    if content == "pickle":
        torch.save({"x": _Payload()}, path)
    elif content == "truncated":
        torch.save(_small_net().state_dict(), path)
        path.write_bytes(path.read_bytes()[:1000])
    else:
        path.write_text("not a checkpoint")
    with pytest.raises(ValueError, match=re.escape(str(path))):
        load_state_dict_file(_small_net(), path)
    assert not _Payload.ran


@pytest.mark.parametrize(
    "network, size, expected",
    [
        (UNet(2, 1, 1, channels=(4, 8, 16, 32, 64), strides=(2, 2, 2, 2)), (64, 64), None),
        (
            UNet(2, 1, 1, channels=(4, 8, 16, 32, 64), strides=(2, 2, 2, 2)),
            (50, 50),
            'multiple of 16, e.g. --spatial_size "[64,64]"',
        ),
        (ASPPNet(2, 1, 1), (50, 50), 'multiple of 32, e.g. --spatial_size "[64,64]"'),
        (ASPPNet(2, 1, 1), (64, 96), None),
    ],
)
def test_probe_input_size_names_a_size_that_fits(network, size, expected):
    network.train()
    if expected is None:
        assert probe_input_size(network, size) is network
    else:
        with pytest.raises(ValueError, match="cannot take") as raised:
            probe_input_size(network, size)
        assert expected in str(raised.value)
    assert network.training  # put back as it was
