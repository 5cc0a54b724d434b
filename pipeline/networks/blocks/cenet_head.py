"""CE-Net segmentation head: a 2x transposed convolution and two 3x3 convolutions to the class logits."""

from __future__ import annotations

import torch
from monai.networks.blocks import Convolution
from torch import nn

from pipeline.networks.checks import check_spatial_dims

__all__ = ["CENetHead"]


class CENetHead(nn.Module):
    """4x4 stride-2 transposed conv to ``mid_channels`` + act, 3x3 conv + act, 3x3 conv to ``out_channels``.

    Gu et al., "CE-Net: Context Encoder Network for 2D Medical Image Segmentation", IEEE TMI 2019.
    https://arxiv.org/abs/1903.02740

    No normalization, as in the authors' code; the last convolution emits logits (no activation).

    Args:
        spatial_dims: number of spatial dimensions; must be 2.
        in_channels: input channels.
        out_channels: number of output channels (classes).
        mid_channels: width of the first two layers. Defaults to 32.
        act: activation type and arguments. Defaults to in-place ReLU.

    Raises:
        ValueError: when ``spatial_dims`` is not 2.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        mid_channels: int = 32,
        act: str | tuple = ("relu", {"inplace": True}),
    ) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims, type(self).__name__)
        self.deconv_1 = Convolution(
            spatial_dims,
            in_channels,
            mid_channels,
            strides=2,
            kernel_size=4,
            act=act,
            norm=None,
            is_transposed=True,
            padding=1,
            output_padding=0,
        )
        self.conv_2 = Convolution(spatial_dims, mid_channels, mid_channels, kernel_size=3, act=act, norm=None)
        self.conv_3 = Convolution(spatial_dims, mid_channels, out_channels, kernel_size=3, conv_only=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the head.

        Args:
            x: ``(B, in_channels, H, W)``.

        Returns:
            logits ``(B, out_channels, 2H, 2W)``.
        """
        return self.conv_3(self.conv_2(self.deconv_1(x)))
