"""Inferers that MONAI does not provide: ensembles of weights with flip test-time augmentation."""

from pipeline.inferers.ensemble import EnsembleInferer, expand_checkpoints, load_ensemble, weights_names

__all__ = ["EnsembleInferer", "expand_checkpoints", "load_ensemble", "weights_names"]
