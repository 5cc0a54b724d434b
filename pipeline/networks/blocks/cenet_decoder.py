"""CE-Net decoder: context extractor (DAC + RMP) on the deepest features, then four additive-skip up blocks."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import Convolution
from torch import nn

from pipeline.networks.blocks.dac import DACBlock
from pipeline.networks.blocks.rmp import RMPBlock
from pipeline.networks.checks import check_spatial_dims

__all__ = ["CENetDecoder", "CENetDecoderBlock"]


class CENetDecoderBlock(nn.Module):
    """CE-Net up block: 1x1 conv to C/4, 3x3 stride-2 transposed conv, 1x1 conv to ``out_channels``.

    Gu et al., "CE-Net: Context Encoder Network for 2D Medical Image Segmentation", IEEE TMI 2019.
    https://arxiv.org/abs/1903.02740

    Each convolution is followed by norm and act (``conv_1``, ``deconv_2``, ``conv_3``); the convolutions keep
    their bias, as in the authors' code.

    Args:
        spatial_dims: number of spatial dimensions; must be 2.
        in_channels: input channels (C); the middle width is ``C // 4``.
        out_channels: output channels.
        act: activation type and arguments. Defaults to in-place ReLU.
        norm: normalization type and arguments. Defaults to batch norm.

    Raises:
        ValueError: when ``spatial_dims`` is not 2.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        act: str | tuple = ("relu", {"inplace": True}),
        norm: str | tuple = "batch",
    ) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims, type(self).__name__)
        mid = in_channels // 4
        self.conv_1 = Convolution(spatial_dims, in_channels, mid, kernel_size=1, act=act, norm=norm)
        self.deconv_2 = Convolution(
            spatial_dims,
            mid,
            mid,
            strides=2,
            kernel_size=3,
            act=act,
            norm=norm,
            is_transposed=True,
            padding=1,
            output_padding=1,
        )
        self.conv_3 = Convolution(spatial_dims, mid, out_channels, kernel_size=1, act=act, norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block.

        Args:
            x: ``(B, in_channels, H, W)``.

        Returns:
            ``(B, out_channels, 2H, 2W)``.
        """
        return self.conv_3(self.deconv_2(self.conv_1(x)))


class CENetDecoder(nn.Module):
    """CE-Net's context extractor and decoder, for any encoder with four stages (SMP-style: it only sees channels).

    Gu et al., "CE-Net: Context Encoder Network for 2D Medical Image Segmentation", IEEE TMI 2019.
    https://arxiv.org/abs/1903.02740

    With features ``[e1, e2, e3, e4]`` (each stage half the size of the one before)::

        c = rmp(dac(e4))                    # C4 + 4 channels
        d4 = decoder_4(c) + e3
        d3 = decoder_3(d4) + e2
        d2 = decoder_2(d3) + e1
        d1 = decoder_1(d2)                  # C1 channels, twice the size of e1

    Args:
        spatial_dims: number of spatial dimensions; must be 2.
        encoder_channels: channels of the four encoder stages, e.g. ``(64, 128, 256, 512)``.
        act: activation type and arguments of the up blocks. Defaults to in-place ReLU.
        norm: normalization type and arguments of the up blocks. Defaults to batch norm.

    Attributes:
        out_channels: channels of the output (``encoder_channels[0]``).

    Raises:
        ValueError: when ``spatial_dims`` is not 2 or ``encoder_channels`` does not have four entries.
    """

    def __init__(
        self,
        spatial_dims: int,
        encoder_channels: Sequence[int],
        act: str | tuple = ("relu", {"inplace": True}),
        norm: str | tuple = "batch",
    ) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims, type(self).__name__)
        if len(encoder_channels) != 4:
            raise ValueError(f"CENetDecoder needs four encoder stages; got encoder_channels={tuple(encoder_channels)}.")
        c1, c2, c3, c4 = encoder_channels
        self.out_channels = c1
        self.dac = DACBlock(spatial_dims, c4)
        self.rmp = RMPBlock(spatial_dims, c4)
        self.decoder_4 = CENetDecoderBlock(spatial_dims, self.rmp.out_channels, c3, act=act, norm=norm)
        self.decoder_3 = CENetDecoderBlock(spatial_dims, c3, c2, act=act, norm=norm)
        self.decoder_2 = CENetDecoderBlock(spatial_dims, c2, c1, act=act, norm=norm)
        self.decoder_1 = CENetDecoderBlock(spatial_dims, c1, c1, act=act, norm=norm)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        """Decode the encoder features.

        Args:
            features: ``[e1, e2, e3, e4]`` with shapes ``(B, C1, H/4, W/4)`` ... ``(B, C4, H/32, W/32)``;
                ``e4`` must be at least 6x6 for the RMP block.

        Returns:
            ``(B, C1, H/2, W/2)``.
        """
        e1, e2, e3, e4 = features[0], features[1], features[2], features[3]
        d4 = self.decoder_4(self.rmp(self.dac(e4))) + e3
        d3 = self.decoder_3(d4) + e2
        d2 = self.decoder_2(d3) + e1
        return self.decoder_1(d2)
