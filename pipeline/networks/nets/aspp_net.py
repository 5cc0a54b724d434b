"""Encoder-decoder with atrous spatial pyramid pooling (DeepLabv3+-like) on a ResNet encoder."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from pipeline.networks.blocks.aspp_decoder import ASPPDecoder
from pipeline.networks.blocks.segmentation_head import SegmentationHead
from pipeline.networks.checks import check_input_size, check_spatial_dims
from pipeline.networks.encoders.resnet import ResNetEncoder

__all__ = ["ASPPNet"]


class ASPPNet(nn.Module):
    """ResNet encoder, ASPP decoder fused with the 1/4 skip, and a 1x1 logits head upsampled to the input size.

    Chen et al., "Encoder-Decoder with Atrous Separable Convolution for Semantic Image Segmentation"
    (DeepLabv3+), ECCV 2018. https://arxiv.org/abs/1802.02611

    The encoder-decoder with ASPP and batch norm of the cardiac-MRI source system, as
    ``head(decoder(encoder(x)))`` with :class:`~pipeline.networks.encoders.ResNetEncoder`,
    :class:`~pipeline.networks.blocks.ASPPDecoder` (MONAI ``SimpleASPP`` on e4) and
    :class:`~pipeline.networks.blocks.SegmentationHead`. With the defaults (ResNet-34) it has 23,556,897
    parameters for ``in_channels=1, out_channels=1``; ``layers=(1, 1, 1, 1)`` makes a 7.18 M variant for CPUs.

    Args:
        spatial_dims: number of spatial dimensions; must be 2.
        in_channels: number of input channels.
        out_channels: number of output channels (classes).
        layers: basic blocks per encoder stage. Defaults to ``(3, 4, 6, 3)`` (ResNet-34).
        aspp_channels: channels of each ASPP branch (four branches). Defaults to 64.
        aspp_dilations: dilations of the four ASPP branches (kernels 1, 3, 3, 3). Defaults to ``(1, 2, 4, 6)``.
        skip_channels: channels of the projected 1/4 skip. Defaults to 48.
        decoder_channels: channels of the decoder's fusion convolutions. Defaults to 256.
        act: activation type and arguments. Defaults to in-place ReLU.
        norm: normalization type and arguments. Defaults to batch norm.

    Raises:
        ValueError: when ``spatial_dims`` is not 2.
    """

    # TorchScript (ckpt_export) sees class attributes in forward only when they are listed here.
    __constants__ = ["size_multiple"]

    #: H and W must be multiples of this (five stride-2 steps in the encoder).
    size_multiple = 32

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        layers: Sequence[int] = (3, 4, 6, 3),
        aspp_channels: int = 64,
        aspp_dilations: Sequence[int] = (1, 2, 4, 6),
        skip_channels: int = 48,
        decoder_channels: int = 256,
        act: str | tuple = ("relu", {"inplace": True}),
        norm: str | tuple = "batch",
    ) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims, type(self).__name__)
        self.in_channels = in_channels
        self.encoder = ResNetEncoder(spatial_dims, in_channels, layers=layers, act=act, norm=norm)
        self.decoder = ASPPDecoder(
            spatial_dims,
            self.encoder.out_channels,
            aspp_channels=aspp_channels,
            aspp_kernel_sizes=(1, 3, 3, 3),
            aspp_dilations=aspp_dilations,
            skip_channels=skip_channels,
            decoder_channels=decoder_channels,
            act=act,
            norm=norm,
        )
        self.head = SegmentationHead(
            spatial_dims, self.decoder.out_channels, out_channels, scale_factor=self.encoder.reductions[0]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Segment a batch.

        Args:
            x: ``(B, in_channels, H, W)``; H and W must be multiples of 32.

        Returns:
            logits ``(B, out_channels, H, W)``.

        Raises:
            ValueError: when ``x`` is not ``(B, in_channels, H, W)`` or H or W is not a multiple of 32.
        """
        check_input_size(x, "ASPPNet", self.in_channels, self.size_multiple)
        return self.head(self.decoder(self.encoder(x)))
