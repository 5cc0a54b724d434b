"""Inferers that MONAI does not provide: ensembles of weights with flip test-time augmentation."""

from pipeline.inferers.ensemble import EnsembleInferer, load_ensemble

__all__ = ["EnsembleInferer", "load_ensemble"]
