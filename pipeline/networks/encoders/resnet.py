"""ResNet encoder (basic blocks) that returns the four stage feature maps for a segmentation decoder."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.layers.factories import Conv, Pool
from monai.networks.layers.utils import get_act_layer, get_norm_layer
from monai.networks.nets.resnet import ResNetBlock
from torch import nn

from pipeline.networks.checks import check_spatial_dims

__all__ = ["ResNetEncoder"]


class ResNetEncoder(nn.Module):
    """ResNet with basic blocks, cut before pooling and the classifier, returning one feature map per stage.

    He et al., "Deep Residual Learning for Image Recognition", CVPR 2016. https://arxiv.org/abs/1512.03385

    The default ``layers=(3, 4, 6, 3)`` is ResNet-34, the CE-Net encoder; ``(2, 2, 2, 2)`` is ResNet-18 and
    ``(1, 1, 1, 1)`` a cheap variant for CPU tests. Layout: stem (7x7 stride-2 conv, norm, act, 3x3 stride-2
    max-pool), then four stages of MONAI ``ResNetBlock`` at 64, 128, 256, 512 channels; stages 2-4 open with
    a stride-2 block whose shortcut is a 1x1 stride-2 conv (no bias) plus norm.

    This is exactly ``monai.networks.nets.ResNet(block="basic", layers=..., block_inplanes=(64, 128, 256, 512),
    spatial_dims=2, conv1_t_stride=2, shortcut_type="B", bias_downsample=False, feed_forward=False)`` with the
    same state-dict keys (``conv1``, ``bn1``, ``layer1`` ... ``layer4``; also torchvision's names), so weights
    move between them. It is rebuilt from ``ResNetBlock`` rather than wrapped because MONAI's ``ResNet`` applies
    its ``norm`` only to the stem and ``act`` to no block, and its ``ResNetFeatures("resnet34")`` uses the
    parameter-free shortcut "A" of MedicalNet, which is not CE-Net's encoder.

    Args:
        spatial_dims: number of spatial dimensions; must be 2.
        in_channels: number of input channels.
        layers: number of basic blocks in each of the four stages. Defaults to ``(3, 4, 6, 3)`` (ResNet-34).
        block_inplanes: channels of the four stages. Defaults to ``(64, 128, 256, 512)``.
        act: activation type and arguments. Defaults to in-place ReLU.
        norm: normalization type and arguments. Defaults to batch norm.

    Attributes:
        out_channels: channels of the returned feature maps, one per stage (``block_inplanes``).
        reductions: how much smaller than the input each returned map is: ``(4, 8, 16, 32)``.

    Raises:
        ValueError: when ``spatial_dims`` is not 2 or ``layers`` / ``block_inplanes`` do not have four entries.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        layers: Sequence[int] = (3, 4, 6, 3),
        block_inplanes: Sequence[int] = (64, 128, 256, 512),
        act: str | tuple = ("relu", {"inplace": True}),
        norm: str | tuple = "batch",
    ) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims, type(self).__name__)
        if len(layers) != 4 or len(block_inplanes) != 4:
            raise ValueError(
                f"ResNetEncoder has four stages: layers and block_inplanes need four entries; "
                f"got layers={tuple(layers)}, block_inplanes={tuple(block_inplanes)}."
            )
        self.out_channels: tuple[int, ...] = tuple(block_inplanes)
        self.reductions: tuple[int, ...] = (4, 8, 16, 32)

        stem_channels = block_inplanes[0]
        self.conv1 = Conv[Conv.CONV, spatial_dims](
            in_channels, stem_channels, kernel_size=7, stride=2, padding=3, bias=False
        )
        self.bn1 = get_norm_layer(name=norm, spatial_dims=spatial_dims, channels=stem_channels)
        self.act = get_act_layer(name=act)
        self.maxpool = Pool[Pool.MAX, spatial_dims](kernel_size=3, stride=2, padding=1)
        self.layer1 = _make_stage(spatial_dims, stem_channels, block_inplanes[0], layers[0], 1, act, norm)
        self.layer2 = _make_stage(spatial_dims, block_inplanes[0], block_inplanes[1], layers[1], 2, act, norm)
        self.layer3 = _make_stage(spatial_dims, block_inplanes[1], block_inplanes[2], layers[2], 2, act, norm)
        self.layer4 = _make_stage(spatial_dims, block_inplanes[2], block_inplanes[3], layers[3], 2, act, norm)

        # The initialisation of torchvision and MONAI's ResNet (norm layers keep PyTorch's ones and zeros).
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Compute the stage features.

        Args:
            x: ``(B, in_channels, H, W)``. Any size works; the decoders that use these features need H and W
                to be multiples of 32 so that every stage halves exactly.

        Returns:
            ``[e1, e2, e3, e4]``: ``(B, 64, H/4, W/4)``, ``(B, 128, H/8, W/8)``, ``(B, 256, H/16, W/16)``,
            ``(B, 512, H/32, W/32)`` (channels as in ``out_channels``).
        """
        x = self.maxpool(self.act(self.bn1(self.conv1(x))))
        e1 = self.layer1(x)
        e2 = self.layer2(e1)
        e3 = self.layer3(e2)
        e4 = self.layer4(e3)
        return [e1, e2, e3, e4]


def _make_stage(
    spatial_dims: int,
    in_planes: int,
    planes: int,
    blocks: int,
    stride: int,
    act: str | tuple,
    norm: str | tuple,
) -> nn.Sequential:
    """One ResNet stage: ``blocks`` basic blocks, the first one strided with a projection shortcut if needed."""
    if blocks < 1:
        raise ValueError(f"Every ResNet stage needs at least one block; got {blocks}.")
    downsample = None
    if stride != 1 or in_planes != planes:
        downsample = nn.Sequential(
            Conv[Conv.CONV, spatial_dims](in_planes, planes, kernel_size=1, stride=stride, bias=False),
            get_norm_layer(name=norm, spatial_dims=spatial_dims, channels=planes),
        )
    stage = [ResNetBlock(in_planes, planes, spatial_dims, stride, downsample, act=act, norm=norm)]
    stage += [ResNetBlock(planes, planes, spatial_dims, act=act, norm=norm) for _ in range(blocks - 1)]
    return nn.Sequential(*stage)
