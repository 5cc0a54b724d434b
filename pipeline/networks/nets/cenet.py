"""CE-Net: context encoder network for 2D medical image segmentation."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from pipeline.networks.blocks.cenet_decoder import CENetDecoder
from pipeline.networks.blocks.cenet_head import CENetHead
from pipeline.networks.checks import check_input_size, check_spatial_dims
from pipeline.networks.encoders.resnet import ResNetEncoder

__all__ = ["CENet"]


class CENet(nn.Module):
    """CE-Net: ResNet-34 encoder, DAC + RMP context extractor, additive-skip decoder and a logits head.

    Gu et al., "CE-Net: Context Encoder Network for 2D Medical Image Segmentation", IEEE TMI 2019.
    https://arxiv.org/abs/1903.02740

    ``head(decoder(encoder(x)))`` with :class:`~pipeline.networks.encoders.ResNetEncoder`,
    :class:`~pipeline.networks.blocks.CENetDecoder` (DAC and RMP on e4, then four up blocks with additive
    skips) and :class:`~pipeline.networks.blocks.CENetHead`. With the defaults it has 29,003,093 parameters for
    ``in_channels=3, out_channels=1`` (28,996,821 for one input channel), as the paper's ~29.0 M. Trained from
    scratch; load local weights with :func:`~pipeline.models.load_state_dict_file`.

    Args:
        spatial_dims: number of spatial dimensions; must be 2. Defaults to 2.
        in_channels: number of input channels. Defaults to 1.
        out_channels: number of output channels (classes). Defaults to 1.
        layers: basic blocks per encoder stage. Defaults to ``(3, 4, 6, 3)`` (ResNet-34).
        act: activation type and arguments (encoder, decoder, head). Defaults to in-place ReLU.
        norm: normalization type and arguments (encoder and decoder). Defaults to batch norm.

    Raises:
        ValueError: when ``spatial_dims`` is not 2.
    """

    # TorchScript (ckpt_export) sees class attributes in forward only when they are listed here.
    __constants__ = ["size_multiple", "min_size"]

    #: H and W must be multiples of this (five stride-2 steps in the encoder).
    size_multiple = 32
    #: ... and at least this: RMP's 6x6 max-pool needs a 6x6 map at 1/32 of the input.
    min_size = 192

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 1,
        layers: Sequence[int] = (3, 4, 6, 3),
        act: str | tuple = ("relu", {"inplace": True}),
        norm: str | tuple = "batch",
    ) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims, type(self).__name__)
        self.in_channels = in_channels
        self.encoder = ResNetEncoder(spatial_dims, in_channels, layers=layers, act=act, norm=norm)
        self.decoder = CENetDecoder(spatial_dims, self.encoder.out_channels, act=act, norm=norm)
        self.head = CENetHead(spatial_dims, self.decoder.out_channels, out_channels, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Segment a batch.

        Args:
            x: ``(B, in_channels, H, W)``; H and W must be multiples of 32 and at least 192.

        Returns:
            logits ``(B, out_channels, H, W)``.

        Raises:
            ValueError: when ``x`` is not ``(B, in_channels, H, W)`` or H or W breaks the size rule.
        """
        check_input_size(x, "CENet", self.in_channels, self.size_multiple, self.min_size)
        return self.head(self.decoder(self.encoder(x)))
