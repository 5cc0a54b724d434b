"""Building blocks of the networks: CE-Net's DAC, RMP, decoder and head; the ASPP decoder; inception."""

from __future__ import annotations

from pipeline.networks.blocks.aspp_decoder import ASPPDecoder
from pipeline.networks.blocks.cenet_decoder import CENetDecoder, CENetDecoderBlock
from pipeline.networks.blocks.cenet_head import CENetHead
from pipeline.networks.blocks.dac import DACBlock
from pipeline.networks.blocks.inception import InceptionBlock
from pipeline.networks.blocks.rmp import RMPBlock
from pipeline.networks.blocks.segmentation_head import SegmentationHead

__all__ = [
    "ASPPDecoder",
    "CENetDecoder",
    "CENetDecoderBlock",
    "CENetHead",
    "DACBlock",
    "InceptionBlock",
    "RMPBlock",
    "SegmentationHead",
]
