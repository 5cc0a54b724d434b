"""Ensembles of networks (cross-validation folds, cosine-annealing snapshots) and flip test-time augmentation.

``EnsembleInferer`` wraps any MONAI inferer. It runs every network on the input and, with ``flip_tta``, on its
horizontal and vertical mirror images, maps each output back, converts it to a probability (sigmoid for one structure,
softmax over the channels for several) and averages the probabilities (not thresholded masks). It returns the logit
of that mean (the log of the mean for softmax, which softmax turns back into it), so the postprocessing a bundle
already applies (activation, ``Invertd``, threshold or argmax) stays as it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from monai.inferers import Inferer
from torch import nn

from pipeline.bundle import flag

__all__ = ["FLIPS", "EnsembleInferer"]

#: Spatial flips of a (B, C, H, W) batch used by flip test-time augmentation: none, left-right, up-down.
FLIPS: tuple[tuple[int, ...], ...] = ((), (3,), (2,))
_EPS = 1e-6


class EnsembleInferer(Inferer):
    """Average the probabilities of several networks and flipped inputs; return the mean as logits.

    Args:
        inferer: the inferer that runs one network on one input (e.g. ``SlidingWindowInferer``).
        networks: the ensemble members; ``None`` uses the network passed at call time only.
        flip_tta: also run each network on the left-right and up-down mirrored input (a bool, or the ``--flip_tta``
            setting as typed: :func:`pipeline.bundle.flag`).
        softmax: the networks' outputs are softmax logits over background and structures (a model of several
            structures); ``False``: one sigmoid channel per structure.
        sides: the structures tell the patient's sides apart (:func:`pipeline.segments.has_sides`): flip TTA
            mirrors up-down only, since a left-right mirrored input shows the right lung where the left one lies.

    Example::

        networks = pipeline.models.load_ensemble(net, folds)
        inferer = EnsembleInferer(SlidingWindowInferer(roi_size=(256, 256)), networks, flip_tta=True)
        logits = inferer(images, network=None)  # (B, 1, H, W)
    """

    def __init__(
        self,
        inferer: Inferer,
        networks: Sequence[nn.Module] | None = None,
        flip_tta: bool | str = False,
        softmax: bool = False,
        sides: bool = False,
    ) -> None:
        super().__init__()
        self.inferer = inferer
        self.networks = list(networks) if networks else None
        flips = FLIPS if flag(flip_tta, "flip_tta") else FLIPS[:1]
        self.flips = tuple(dims for dims in flips if not (sides and 3 in dims))
        self.softmax = bool(softmax)

    def __call__(
        self, inputs: torch.Tensor, network: nn.Module | None = None, *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        """Run the ensemble on a (B, C, H, W) batch.

        Args:
            inputs: the preprocessed batch.
            network: used when the inferer has no networks of its own.

        Returns:
            (B, out_channels, H, W) logits of the averaged probability; a single network without flips returns its
            own logits unchanged.
        """
        networks = self.networks or [network]
        if networks[0] is None:
            raise ValueError("EnsembleInferer has no network: pass networks or a network at call time")
        if len(networks) == 1 and len(self.flips) == 1:
            return self.inferer(inputs, networks[0], *args, **kwargs)
        total = None
        for net in networks:
            for dims in self.flips:
                flipped = torch.flip(inputs, dims) if dims else inputs
                logits = self.inferer(flipped, net, *args, **kwargs)
                logits = (torch.flip(logits, dims) if dims else logits).float()
                probability = torch.softmax(logits, dim=1) if self.softmax else torch.sigmoid(logits)
                total = probability if total is None else total + probability
        mean = total / (len(networks) * len(self.flips))
        if self.softmax:
            return torch.log(mean.clamp_min(_EPS))
        return torch.logit(mean.clamp(_EPS, 1.0 - _EPS))
