"""Inception block: parallel 1x1, 3x3, 5x5 (two 3x3) and pooling branches, concatenated."""

from __future__ import annotations

from collections import OrderedDict

import torch
from monai.networks.blocks import Convolution
from monai.networks.layers.factories import Pool
from torch import nn

from pipeline.networks.checks import check_spatial_dims

__all__ = ["InceptionBlock"]


class InceptionBlock(nn.Module):
    """Four parallel branches, each ending with ``out_channels / 4`` channels, concatenated.

    Szegedy et al., "Going Deeper with Convolutions", CVPR 2015. https://arxiv.org/abs/1409.4842 (5x5 as two
    3x3: Szegedy et al., "Rethinking the Inception Architecture for Computer Vision", https://arxiv.org/abs/1512.00567)

    Branches (every convolution is followed by norm, dropout and act):

    - ``branch_1x1``: 1x1 conv;
    - ``branch_3x3``: 1x1 reduce, 3x3 conv;
    - ``branch_5x5``: 1x1 reduce, two 3x3 convs (the receptive field of a 5x5);
    - ``branch_pool``: 3x3 stride-1 max-pool, 1x1 conv.

    Args:
        spatial_dims: number of spatial dimensions; must be 2.
        in_channels: input channels.
        out_channels: output channels; must be a multiple of 4 (one quarter per branch).
        act: activation type and arguments. Defaults to LeakyReLU (slope 0.1).
        norm: normalization type and arguments. Defaults to batch norm.
        bias: whether the convolutions have a bias term. Defaults to True.
        dropout: dropout ratio after each convolution. Defaults to no dropout.

    Raises:
        ValueError: when ``spatial_dims`` is not 2 or ``out_channels`` is not a positive multiple of 4.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        act: str | tuple = ("LeakyReLU", {"negative_slope": 0.1, "inplace": True}),
        norm: str | tuple = "batch",
        bias: bool = True,
        dropout: float | tuple = 0.0,
    ) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims, type(self).__name__)
        if out_channels <= 0 or out_channels % 4 != 0:
            raise ValueError(
                f"InceptionBlock splits out_channels over four branches: need a multiple of 4; got {out_channels}."
            )
        branch = out_channels // 4

        def conv(cin: int, kernel_size: int) -> Convolution:
            return Convolution(
                spatial_dims, cin, branch, kernel_size=kernel_size, act=act, norm=norm, dropout=dropout, bias=bias
            )

        self.branch_1x1 = conv(in_channels, 1)
        self.branch_3x3 = nn.Sequential(OrderedDict([("reduce", conv(in_channels, 1)), ("conv_3x3", conv(branch, 3))]))
        self.branch_5x5 = nn.Sequential(
            OrderedDict(
                [("reduce", conv(in_channels, 1)), ("conv_3x3_a", conv(branch, 3)), ("conv_3x3_b", conv(branch, 3))]
            )
        )
        self.branch_pool = nn.Sequential(
            OrderedDict(
                [
                    ("pool", Pool[Pool.MAX, spatial_dims](kernel_size=3, stride=1, padding=1)),
                    ("proj", conv(in_channels, 1)),
                ]
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block.

        Args:
            x: ``(B, in_channels, H, W)``.

        Returns:
            ``(B, out_channels, H, W)``: the 1x1, 3x3, 5x5 and pooling branches in that channel order. In the
            memory format of the block's weights: with channels-last weights, the input and the output are made
            channels-last too (same values). PyTorch keeps the maps of a network with a 1-channel input contiguous up
            to the first full-resolution ``cat``, and there the stride-1 max-pool runs 4 x slower than channels-last
            on a CPU (``docs/evidence/cpu-speed.md``).
        """
        if self.branch_3x3.conv_3x3.conv.weight.is_contiguous(memory_format=torch.channels_last):
            x = x.contiguous(memory_format=torch.channels_last)
            branches = [self.branch_1x1(x), self.branch_3x3(x), self.branch_5x5(x), self.branch_pool(x)]
            return torch.cat(branches, dim=1).contiguous(memory_format=torch.channels_last)
        return torch.cat([self.branch_1x1(x), self.branch_3x3(x), self.branch_5x5(x), self.branch_pool(x)], dim=1)
