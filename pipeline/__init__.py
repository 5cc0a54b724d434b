"""2D medical image segmentation on MONAI: transforms, networks, dataset intake and bundle helpers."""

__version__ = "0.1.0"
