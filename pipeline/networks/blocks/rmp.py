"""Residual multi-kernel pooling (RMP) block of CE-Net."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.layers.factories import Conv, Pool
from torch import nn

from pipeline.networks.checks import check_spatial_dims

__all__ = ["RMPBlock"]


class RMPBlock(nn.Module):
    """Residual multi-kernel pooling: max-pool at several scales, squeeze each to one channel, upsample, concat.

    Gu et al., "CE-Net: Context Encoder Network for 2D Medical Image Segmentation", IEEE TMI 2019.
    https://arxiv.org/abs/1903.02740

    For each kernel k in ``pool_sizes``: max-pool with kernel = stride = k, the shared 1x1 convolution
    (``conv``) to one channel, bilinear upsampling back to the input size. The pooled maps come first and the
    input last in the concatenation, as in the authors' code, so the output has ``in_channels +
    len(pool_sizes)`` channels (516 for CE-Net's 512). There is no activation, as in the original.

    Args:
        spatial_dims: number of spatial dimensions; must be 2.
        in_channels: channels of the input.
        pool_sizes: pooling kernel sizes (each also the stride). Defaults to ``(2, 3, 5, 6)``.

    Attributes:
        out_channels: ``in_channels + len(pool_sizes)``.

    Raises:
        ValueError: when ``spatial_dims`` is not 2 or ``pool_sizes`` is empty.
    """

    def __init__(self, spatial_dims: int, in_channels: int, pool_sizes: Sequence[int] = (2, 3, 5, 6)) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims, type(self).__name__)
        if len(pool_sizes) == 0:
            raise ValueError("RMPBlock needs at least one pooling size; got an empty pool_sizes.")
        self.out_channels = in_channels + len(pool_sizes)
        self.largest_pool = max(pool_sizes)
        self.pools = nn.ModuleList([Pool[Pool.MAX, spatial_dims](kernel_size=k, stride=k) for k in pool_sizes])
        self.conv = Conv[Conv.CONV, spatial_dims](in_channels, 1, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block.

        Args:
            x: ``(B, C, H, W)`` with H and W at least the largest pooling size (6 by default).

        Returns:
            ``(B, C + len(pool_sizes), H, W)``.

        Raises:
            ValueError: when H or W is smaller than the largest pooling size.
        """
        h = x.shape[-2]
        w = x.shape[-1]
        if h < self.largest_pool or w < self.largest_pool:
            raise ValueError(
                f"RMPBlock needs H and W of at least {self.largest_pool} (its largest pooling kernel); got {h}x{w}."
            )
        pooled = [
            F.interpolate(self.conv(pool(x)), size=[h, w], mode="bilinear", align_corners=False) for pool in self.pools
        ]
        pooled.append(x)
        return torch.cat(pooled, dim=1)
