"""2D segmentation networks (CE-Net, ASPP encoder-decoder, Inception U-Net), their blocks and encoder.

All networks take MONAI's ``spatial_dims, in_channels, out_channels`` first, accept 2D only, and return logits.
"""

from __future__ import annotations

from pipeline.networks.blocks.dac import DACBlock
from pipeline.networks.blocks.rmp import RMPBlock
from pipeline.networks.checks import probe_input_size
from pipeline.networks.encoders.resnet import ResNetEncoder
from pipeline.networks.nets.aspp_net import ASPPNet
from pipeline.networks.nets.cenet import CENet
from pipeline.networks.nets.inception_unet import InceptionUNet
from pipeline.networks.output_bias import foreground_prior, init_output_bias

__all__ = [
    "ASPPNet",
    "CENet",
    "DACBlock",
    "InceptionUNet",
    "RMPBlock",
    "ResNetEncoder",
    "foreground_prior",
    "init_output_bias",
    "probe_input_size",
]
