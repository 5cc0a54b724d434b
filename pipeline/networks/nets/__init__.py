"""Segmentation networks: ``spatial_dims, in_channels, out_channels`` first, logits out."""

from __future__ import annotations

from pipeline.networks.nets.aspp_net import ASPPNet
from pipeline.networks.nets.cenet import CENet
from pipeline.networks.nets.inception_unet import InceptionUNet

__all__ = ["ASPPNet", "CENet", "InceptionUNet"]
