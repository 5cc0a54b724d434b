"""Encoders that return one feature map per stage and publish their ``out_channels`` (SMP style)."""

from __future__ import annotations

from pipeline.networks.encoders.resnet import ResNetEncoder

__all__ = ["ResNetEncoder"]
