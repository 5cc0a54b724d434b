"""2D segmentation networks (CE-Net, ASPP encoder-decoder, Inception U-Net), their blocks and encoder.

All networks take MONAI's ``spatial_dims, in_channels, out_channels`` first, accept 2D only, and return logits.
"""

from __future__ import annotations

from pipeline.networks.blocks.dac import DACBlock
from pipeline.networks.blocks.rmp import RMPBlock
from pipeline.networks.encoders.resnet import ResNetEncoder
from pipeline.networks.nets.aspp_net import ASPPNet
from pipeline.networks.nets.cenet import CENet
from pipeline.networks.nets.inception_unet import InceptionUNet
from pipeline.networks.output_bias import foreground_prior, init_output_bias
from pipeline.networks.utils import load_state_dict_file, place, probe_input_size

__all__ = [
    "ASPPNet",
    "CENet",
    "DACBlock",
    "InceptionUNet",
    "RMPBlock",
    "ResNetEncoder",
    "foreground_prior",
    "init_output_bias",
    "load_state_dict_file",
    "place",
    "probe_input_size",
]
