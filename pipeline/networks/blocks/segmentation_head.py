"""Segmentation head: a convolution to the class logits, then bilinear upsampling to the input size."""

from __future__ import annotations

import torch
from monai.networks.blocks import Convolution, UpSample
from torch import nn

from pipeline.networks.checks import check_spatial_dims

__all__ = ["SegmentationHead"]


class SegmentationHead(nn.Module):
    """Convolution to ``out_channels`` logits, then non-trainable bilinear upsampling by ``scale_factor``.

    The convolution runs before the upsampling: a 1x1 convolution and bilinear interpolation commute (both
    are linear and the interpolation weights sum to one), so this is the same output at a fraction of the cost.

    Args:
        spatial_dims: number of spatial dimensions; must be 2.
        in_channels: input channels.
        out_channels: number of output channels (classes).
        kernel_size: kernel size of the convolution. Defaults to 1.
        scale_factor: upsampling factor; 1 skips upsampling. Defaults to 4.

    Raises:
        ValueError: when ``spatial_dims`` is not 2.
    """

    def __init__(
        self, spatial_dims: int, in_channels: int, out_channels: int, kernel_size: int = 1, scale_factor: int = 4
    ) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims, type(self).__name__)
        self.conv = Convolution(spatial_dims, in_channels, out_channels, kernel_size=kernel_size, conv_only=True)
        self.upsample: nn.Module = nn.Identity()
        if scale_factor != 1:
            self.upsample = UpSample(
                spatial_dims,
                scale_factor=scale_factor,
                mode="nontrainable",
                pre_conv=None,
                interp_mode="bilinear",
                align_corners=False,
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the head.

        Args:
            x: ``(B, in_channels, H, W)``.

        Returns:
            logits ``(B, out_channels, H * scale_factor, W * scale_factor)``.
        """
        return self.upsample(self.conv(x))
