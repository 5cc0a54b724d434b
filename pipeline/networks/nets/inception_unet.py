"""U-Net whose convolution blocks are inception blocks."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import Convolution, UpSample
from monai.networks.layers.factories import Pool
from torch import nn

from pipeline.networks.blocks.inception import InceptionBlock
from pipeline.networks.checks import check_input_size, check_spatial_dims

__all__ = ["InceptionDown", "InceptionUNet", "InceptionUpCat"]


class InceptionDown(nn.Module):
    """2x2 max-pooling, then an inception block (BasicUNet's ``Down`` with the conv pair swapped out).

    Args:
        spatial_dims: number of spatial dimensions; must be 2.
        in_channels: input channels.
        out_channels: output channels (a multiple of 4).
        act: activation type and arguments.
        norm: normalization type and arguments.
        bias: whether the convolutions have a bias term.
        dropout: dropout ratio.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        act: str | tuple,
        norm: str | tuple,
        bias: bool,
        dropout: float | tuple = 0.0,
    ) -> None:
        super().__init__()
        self.max_pooling = Pool[Pool.MAX, spatial_dims](kernel_size=2)
        self.convs = InceptionBlock(spatial_dims, in_channels, out_channels, act, norm, bias, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, H, W)`` -> ``(B, out_channels, H/2, W/2)``."""
        return self.convs(self.max_pooling(x))


class InceptionUpCat(nn.Module):
    """2x upsampling to half the channels, concatenation with the encoder skip, then an inception block.

    Args:
        spatial_dims: number of spatial dimensions; must be 2.
        in_channels: channels of the map to upsample.
        cat_channels: channels of the encoder skip.
        out_channels: output channels (a multiple of 4).
        act: activation type and arguments.
        norm: normalization type and arguments.
        bias: whether the convolutions have a bias term.
        dropout: dropout ratio.
        upsample: MONAI ``UpSample`` mode: ``"deconv"``, ``"pixelshuffle"`` or ``"nontrainable"`` (bilinear
            after a 1x1 conv). Defaults to ``"deconv"``.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        cat_channels: int,
        out_channels: int,
        act: str | tuple,
        norm: str | tuple,
        bias: bool,
        dropout: float | tuple = 0.0,
        upsample: str = "deconv",
    ) -> None:
        super().__init__()
        up_channels = in_channels // 2
        self.upsample = UpSample(
            spatial_dims,
            in_channels,
            up_channels,
            scale_factor=2,
            mode=upsample,
            interp_mode="bilinear",
            align_corners=False,
        )
        self.convs = InceptionBlock(spatial_dims, cat_channels + up_channels, out_channels, act, norm, bias, dropout)

    def forward(self, x: torch.Tensor, x_e: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, H, W)`` and skip ``(B, cat_channels, 2H, 2W)`` -> ``(B, out_channels, 2H, 2W)``."""
        return self.convs(torch.cat([x_e, self.upsample(x)], dim=1))


class InceptionUNet(nn.Module):
    """U-Net with inception blocks (batch norm + LeakyReLU) in place of its pairs of 3x3 convolutions.

    Ronneberger et al., "U-Net: Convolutional Networks for Biomedical Image Segmentation", MICCAI 2015.
    https://arxiv.org/abs/1505.04597; Punn and Agarwal, "Inception U-Net Architecture for Semantic Segmentation
    to Identify Nuclei in Microscopy Cell Images", ACM TOMM 2020. https://doi.org/10.1145/3376922

    Laid out like MONAI's ``BasicUNet``: ``conv_0``, ``down_1`` ... ``down_4``, ``upcat_4`` ... ``upcat_1``,
    ``final_conv`` (1x1 to logits). Each block is an
    :class:`~pipeline.networks.blocks.InceptionBlock`. With the defaults it has 1,788,881 parameters for
    ``in_channels=1, out_channels=1``.

    Args:
        spatial_dims: number of spatial dimensions; must be 2.
        in_channels: number of input channels.
        out_channels: number of output channels (classes).
        features: channels of the five levels, top to bottom; each a multiple of 4. Defaults to
            ``(32, 64, 128, 256, 512)``.
        act: activation type and arguments. Defaults to LeakyReLU with slope 0.1.
        norm: normalization type and arguments. Defaults to batch norm.
        bias: whether the convolutions have a bias term. Defaults to True.
        dropout: dropout ratio. Defaults to no dropout.
        upsample: MONAI ``UpSample`` mode of the decoder. Defaults to ``"deconv"``.

    Raises:
        ValueError: when ``spatial_dims`` is not 2, ``features`` does not have five entries, or a feature count
            is not a multiple of 4.
    """

    # TorchScript (ckpt_export) sees class attributes in forward only when they are listed here.
    __constants__ = ["size_multiple"]

    #: H and W must be multiples of this (four 2x2 poolings).
    size_multiple = 16

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        features: Sequence[int] = (32, 64, 128, 256, 512),
        act: str | tuple = ("LeakyReLU", {"negative_slope": 0.1, "inplace": True}),
        norm: str | tuple = "batch",
        bias: bool = True,
        dropout: float | tuple = 0.0,
        upsample: str = "deconv",
    ) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims, type(self).__name__)
        if len(features) != 5:
            raise ValueError(f"InceptionUNet has five levels: features needs five entries; got {tuple(features)}.")
        self.in_channels = in_channels
        f0, f1, f2, f3, f4 = features
        opts = {"act": act, "norm": norm, "bias": bias, "dropout": dropout}

        self.conv_0 = InceptionBlock(spatial_dims, in_channels, f0, **opts)
        self.down_1 = InceptionDown(spatial_dims, f0, f1, **opts)
        self.down_2 = InceptionDown(spatial_dims, f1, f2, **opts)
        self.down_3 = InceptionDown(spatial_dims, f2, f3, **opts)
        self.down_4 = InceptionDown(spatial_dims, f3, f4, **opts)
        self.upcat_4 = InceptionUpCat(spatial_dims, f4, f3, f3, upsample=upsample, **opts)
        self.upcat_3 = InceptionUpCat(spatial_dims, f3, f2, f2, upsample=upsample, **opts)
        self.upcat_2 = InceptionUpCat(spatial_dims, f2, f1, f1, upsample=upsample, **opts)
        self.upcat_1 = InceptionUpCat(spatial_dims, f1, f0, f0, upsample=upsample, **opts)
        self.final_conv = Convolution(spatial_dims, f0, out_channels, kernel_size=1, conv_only=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Segment a batch.

        Args:
            x: ``(B, in_channels, H, W)``; H and W must be multiples of 16.

        Returns:
            logits ``(B, out_channels, H, W)``.

        Raises:
            ValueError: when ``x`` is not ``(B, in_channels, H, W)`` or H or W is not a multiple of 16.
        """
        check_input_size(x, "InceptionUNet", self.in_channels, self.size_multiple)
        x0 = self.conv_0(x)
        x1 = self.down_1(x0)
        x2 = self.down_2(x1)
        x3 = self.down_3(x2)
        x4 = self.down_4(x3)
        u4 = self.upcat_4(x4, x3)
        u3 = self.upcat_3(u4, x2)
        u2 = self.upcat_2(u3, x1)
        u1 = self.upcat_1(u2, x0)
        return self.final_conv(u1)
