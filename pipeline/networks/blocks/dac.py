"""Dense atrous convolution (DAC) block of CE-Net."""

from __future__ import annotations

import torch
from monai.networks.layers.factories import Conv
from monai.networks.layers.utils import get_act_layer
from torch import nn

from pipeline.networks.checks import check_spatial_dims

__all__ = ["DACBlock"]


class DACBlock(nn.Module):
    """Dense atrous convolution: four cascaded branches of shared dilated convolutions added to the input.

    Gu et al., "CE-Net: Context Encoder Network for 2D Medical Image Segmentation", IEEE TMI 2019.
    https://arxiv.org/abs/1903.02740

    Three 3x3 convolutions with dilation 1, 3 and 5 (``dilate_1``, ``dilate_3``, ``dilate_5``) and one 1x1
    convolution (``conv_1x1``), each shared by every branch that uses it::

        out = x + act(d1(x)) + act(c1(d3(x))) + act(c1(d3(d1(x)))) + act(c1(d5(d3(d1(x)))))

    The branches see receptive fields of 3, 7, 9 and 19. Biases start at zero, as in the authors' code.

    Args:
        spatial_dims: number of spatial dimensions; must be 2.
        in_channels: channels of the input and of the output.
        act: activation type and arguments. Defaults to ReLU. An in-place activation is run out of place here,
            because ``d1(x)`` feeds both the first branch and the later convolutions.

    Raises:
        ValueError: when ``spatial_dims`` is not 2.
    """

    def __init__(self, spatial_dims: int, in_channels: int, act: str | tuple = "relu") -> None:
        super().__init__()
        check_spatial_dims(spatial_dims, type(self).__name__)
        conv = Conv[Conv.CONV, spatial_dims]
        self.dilate_1 = conv(in_channels, in_channels, kernel_size=3, dilation=1, padding=1)
        self.dilate_3 = conv(in_channels, in_channels, kernel_size=3, dilation=3, padding=3)
        self.dilate_5 = conv(in_channels, in_channels, kernel_size=3, dilation=5, padding=5)
        self.conv_1x1 = conv(in_channels, in_channels, kernel_size=1)
        self.act = get_act_layer(name=act)
        if hasattr(self.act, "inplace"):
            self.act.inplace = False
        for m in (self.dilate_1, self.dilate_3, self.dilate_5, self.conv_1x1):
            nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block.

        Args:
            x: ``(B, C, H, W)``.

        Returns:
            ``(B, C, H, W)``.
        """
        d1 = self.dilate_1(x)
        d3_d1 = self.dilate_3(d1)
        branch_1 = self.act(d1)
        branch_2 = self.act(self.conv_1x1(self.dilate_3(x)))
        branch_3 = self.act(self.conv_1x1(d3_d1))
        branch_4 = self.act(self.conv_1x1(self.dilate_5(d3_d1)))
        return x + branch_1 + branch_2 + branch_3 + branch_4
