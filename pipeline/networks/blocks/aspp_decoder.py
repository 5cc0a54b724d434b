"""DeepLabv3+-style decoder: ASPP on the deepest features, fused with the shallowest skip."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution, SimpleASPP
from torch import nn

from pipeline.networks.checks import check_spatial_dims

__all__ = ["ASPPDecoder"]


class ASPPDecoder(nn.Module):
    """ASPP on the last encoder stage, upsampled and fused with the first stage (SMP-style: it only sees channels).

    Chen et al., "Encoder-Decoder with Atrous Separable Convolution for Semantic Image Segmentation"
    (DeepLabv3+), ECCV 2018. https://arxiv.org/abs/1802.02611

    With features ``[e1, ..., eN]``::

        a = aspp(eN)                                   # MONAI SimpleASPP, norm + act after its 1x1 fusion
        a = bilinear upsample of a to e1's size
        s = skip(e1)                                   # 1x1 conv + norm + act to skip_channels
        out = fuse_2(fuse_1(cat([a, s])))              # two 3x3 conv + norm + act

    Unlike DeepLabv3+ the encoder is not dilated, so ASPP runs at the encoder's deepest stride (1/32 for
    :class:`~pipeline.networks.encoders.ResNetEncoder`) and there is no image-pooling branch (SimpleASPP).

    Args:
        spatial_dims: number of spatial dimensions; must be 2.
        encoder_channels: channels of the encoder stages, shallowest first, e.g. ``(64, 128, 256, 512)``.
        aspp_channels: channels of each ASPP branch; ASPP outputs ``aspp_channels * len(aspp_kernel_sizes)``.
            Defaults to 64.
        aspp_kernel_sizes: kernel size of each ASPP branch. Defaults to ``(1, 3, 3, 3)``.
        aspp_dilations: dilation of each ASPP branch. Defaults to ``(1, 2, 4, 6)``.
        skip_channels: channels the shallow skip is projected to. Defaults to 48.
        decoder_channels: channels of the fusion convolutions and of the output. Defaults to 256.
        act: activation type and arguments. Defaults to in-place ReLU.
        norm: normalization type and arguments. Defaults to batch norm.

    Attributes:
        out_channels: ``decoder_channels``.

    Raises:
        ValueError: when ``spatial_dims`` is not 2, fewer than two encoder stages are given, or the ASPP
            kernel sizes and dilations differ in length.
    """

    def __init__(
        self,
        spatial_dims: int,
        encoder_channels: Sequence[int],
        aspp_channels: int = 64,
        aspp_kernel_sizes: Sequence[int] = (1, 3, 3, 3),
        aspp_dilations: Sequence[int] = (1, 2, 4, 6),
        skip_channels: int = 48,
        decoder_channels: int = 256,
        act: str | tuple = ("relu", {"inplace": True}),
        norm: str | tuple = "batch",
    ) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims, type(self).__name__)
        if len(encoder_channels) < 2:
            raise ValueError(f"ASPPDecoder needs at least two encoder stages; got {tuple(encoder_channels)}.")
        self.out_channels = decoder_channels
        self.aspp = SimpleASPP(
            spatial_dims,
            encoder_channels[-1],
            aspp_channels,
            kernel_sizes=aspp_kernel_sizes,
            dilations=aspp_dilations,
            norm_type=norm,
            acti_type=act,
            bias=False,
        )
        aspp_out = aspp_channels * len(aspp_kernel_sizes)
        self.skip = Convolution(
            spatial_dims, encoder_channels[0], skip_channels, kernel_size=1, act=act, norm=norm, bias=False
        )
        self.fuse_1 = Convolution(
            spatial_dims, aspp_out + skip_channels, decoder_channels, kernel_size=3, act=act, norm=norm, bias=False
        )
        self.fuse_2 = Convolution(
            spatial_dims, decoder_channels, decoder_channels, kernel_size=3, act=act, norm=norm, bias=False
        )

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        """Decode the encoder features.

        Args:
            features: ``[e1, ..., eN]``, e.g. ``(B, 64, H/4, W/4)`` ... ``(B, 512, H/32, W/32)``.

        Returns:
            ``(B, decoder_channels, H1, W1)`` at the size of ``e1`` (H/4, W/4 for the ResNet encoder).
        """
        low = features[0]
        context = F.interpolate(
            self.aspp(features[-1]), size=[low.shape[-2], low.shape[-1]], mode="bilinear", align_corners=False
        )
        return self.fuse_2(self.fuse_1(torch.cat([context, self.skip(low)], dim=1)))
