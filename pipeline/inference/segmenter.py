"""A trained model in one Python object: segment a file, an array or a DICOM series as the bundle's inference does.

Like nnU-Net's ``nnUNetPredictor`` or lungmask's ``LMInferer``, :class:`Segmenter` is built from the weights a training
run wrote (its model card names the bundle and the settings) and applies exactly the objects of that bundle's
``inference.json``: the same intensity scaling, resize, sliding-window inferer, activation, threshold or argmax and
inverse resize, and for a series or volume the same 3D clean-up. Masks come back on the input's own pixel grid as
label maps in the dataset's label values (0 and 1 for a binary model; 1 right lung, 2 left lung... for a model of
several structures, :attr:`Segmenter.structures`); nothing is written to disk::

    from pipeline import Segmenter

    model = Segmenter.from_run("outputs/cenet/latest")    # or Segmenter.from_bundle("shared/cenet_lung")
    labels = model.predict("scan.dcm")                   # (H, W) uint8 label map
    labels = model.predict(hu_array)                      # (H, W) or (C, H, W) array in the modality's units
    labels, probabilities = model.predict("xray.png", probabilities=True)  # (K + 1, H, W) softmax, or (1, H, W)
    volume = model.predict("heart.nii.gz")                # a 3D NIfTI volume: labels in the file's voxel order
    result = model.predict_series("study/series_folder")  # one DICOM series
    print(result.mask.shape, result.report["segmented_volume_ml"])
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.bundle import ConfigParser
from monai.data import MetaTensor
from monai.transforms import Compose, Invertd

from pipeline.bundle import BUNDLES_DIR, check_device, repository_bundles
from pipeline.errors import root_cause
from pipeline.inference.inputs import find_inputs
from pipeline.inference.predictor import SlicePredictor
from pipeline.inference.runner import InferenceRunner
from pipeline.io.dicom_volume import SeriesVolume, load_series_volume
from pipeline.io.nifti_slice import load_nifti_volume, nifti_depth
from pipeline.io.readers import NIFTI_SUFFIXES, file_suffix
from pipeline.models.card import ModelCard, card_path
from pipeline.overrides import UnknownOverrideError, unknown_ids
from pipeline.segments import Structure

__all__ = ["Segmenter", "SeriesResult"]

logger = logging.getLogger("pipeline.inference")

_CHANNELS = (1, 3, 4)  # grey, RGB and RGBA


@dataclass
class SeriesResult:
    """One segmented DICOM series.

    Attributes:
        mask: (N, H, W) uint8 label map in the structures' values (0/1 for a binary model), slice k on the k-th
            slice of ``volume`` (sorted along the slice normal).
        volume: the series as read: (N, H, W) array in its units, spacing, affine and the slices' headers.
        report: the measurements ``report.json`` holds: ``segmented_volume_ml``, ``volume_before_postprocessing_ml``,
            ``postprocessing`` (the 3D clean-up's counts), ``segmented_voxels``, ``per_slice`` areas and
            ``spacing_mm``; with several structures, ``structures``: each one's volume.
    """

    mask: np.ndarray
    volume: SeriesVolume
    report: dict[str, Any]


class Segmenter:
    """Apply trained weights with their bundle's inference pre- and postprocessing.

    Args:
        weights: a weights file written by training (``.../models/model.pt``), or its TorchScript / ONNX export.
        bundle: the bundle's configs: a repository bundle's name (``"unet"``), or a folder holding
            ``configs/inference.json`` (a shared bundle, :func:`pipeline.models.package.package_run`) or
            ``inference.json``; default the repository bundle the model card names.
        device: ``"cpu"``, ``"cuda"``...; default CUDA when available.
        overrides: any other ``inference.json`` id, as on the command line (``flip_tta=True``,
            ``volume_keep_largest=1``). A setting that contradicts the model card is refused, as in the bundle.

    Raises:
        ValueError: weights without a model card and no ``bundle``; an override that contradicts the card or that
            is not an id of the bundle's config (:class:`~pipeline.overrides.UnknownOverrideError`); a device this
            machine does not have.
        ModelCardError: a card that names anything but a repository bundle, or holds config syntax.
    """

    def __init__(
        self,
        weights: str | os.PathLike,
        bundle: str | os.PathLike | None = None,
        device: str | torch.device | None = None,
        **overrides: Any,
    ) -> None:
        self.weights = Path(weights)
        if not self.weights.is_file():
            raise FileNotFoundError(f"No weights file at {self.weights}.")
        card = ModelCard.read(self.weights)
        if bundle is None:
            if not card.found:
                raise ValueError(
                    f"{self.weights} has no model card ({card_path(self.weights).name}): pass bundle='cenet' (or the "
                    "bundle that trained it)"
                )
            folder = card.bundle_dir()
        elif Path(bundle).is_dir():
            folder = Path(bundle)
        elif str(bundle) in repository_bundles():
            folder = BUNDLES_DIR / str(bundle)
        else:
            raise FileNotFoundError(
                f"bundle {str(bundle)!r} is neither a folder nor one of this repository's bundles "
                f"({', '.join(repository_bundles())})"
            )
        config = folder / "configs" / "inference.json"
        if not config.is_file():
            config = folder / "inference.json"
        if not config.is_file():
            raise FileNotFoundError(f"No bundle config at {config}.")
        device = check_device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.parser = ConfigParser()
        self.parser.read_config(str(config))
        self.parser.read_meta(str(config.parent / "metadata.json"))
        unknown = unknown_ids(overrides, self.parser.config)
        if unknown:
            raise UnknownOverrideError(f"{', '.join(unknown)}: not a setting of {config}; it would be ignored")
        # ``input`` only satisfies the runner's constructor: nothing is read from it, and nothing is written
        settings = {"checkpoint": str(self.weights), "device": str(device), "input": "."}
        if config.parent.name == "configs":  # a shared bundle: its paths are relative to its folder
            settings["bundle_root"] = str(config.parent.parent)
        self.parser.update({**settings, **overrides})
        try:
            for index, step in enumerate(self.parser.get("initialize", [])):
                if "readable_errors" not in str(step):  # the bundle's checks (settings, input size, model card)
                    self.parser.get_parsed_content(f"initialize#{index}")
            self.runner: InferenceRunner = self.parser.get_parsed_content("runner")
            self.settings: dict[str, Any] = self.parser.get_parsed_content("trained_settings")
            self._probabilities: SlicePredictor | None = None
        except RuntimeError as e:  # MONAI wraps the failing expression's error: hand over the error itself
            cause = root_cause(e)
            if cause is e:
                raise
            raise cause from e

    @classmethod
    def from_run(cls, run_dir: str | os.PathLike, **kwargs: Any) -> Segmenter:
        """The best weights of a training run folder (``outputs/<bundle>/latest`` or ``.../runs/<time>``)."""
        return cls(Path(run_dir) / "models" / "model.pt", **kwargs)

    @classmethod
    def from_bundle(cls, bundle_dir: str | os.PathLike, **kwargs: Any) -> Segmenter:
        """A shared bundle folder (``pipeline-package``): its ``models/model.pt`` with its ``configs/``."""
        return cls(Path(bundle_dir) / "models" / "model.pt", bundle=bundle_dir, **kwargs)

    @property
    def structures(self) -> list[Structure]:
        """What the model segments, by label value: the values :meth:`predict` returns."""
        return list(self.runner.structures)

    def predict(
        self, image: str | os.PathLike | np.ndarray | torch.Tensor, probabilities: bool = False
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Segment one 2D image, or a 3D NIfTI volume slice by slice.

        Args:
            image: a file (PNG, TIFF, JPEG, DICOM, a NIfTI slice or volume), or an (H, W) or (C, H, W) array in the
                units the model was trained on (Hounsfield units for CT, raw intensities otherwise). An image may
                also come channel-last, (H, W, 1), (H, W, 3) or (H, W, 4), as PIL, imageio and scikit-image give
                colour, in RGB order (OpenCV's ``imread`` gives BGR: convert it first).
            probabilities: also return each channel's probability at the image's own size: ``(K + 1, H, W)``
                softmax (background first) for ``K`` structures, ``(1, H, W)`` sigmoid for one.

        Returns:
            (H, W) uint8 label map in the dataset's values on the image's own grid (0/1 for a binary model); for a
            NIfTI volume, the label volume in the file's voxel order (as ``nibabel`` indexes it), cleaned in 3D as the
            command cleans it. With ``probabilities``, ``(labels, probabilities)`` (2D images only).

        Raises:
            ValueError: NaN or infinite values, an image the network cannot take (the message says why), or
                ``probabilities`` for a volume.
            InputFitError: an image that cannot be what the model was trained on (``force_input=True`` segments it).
            NonFiniteOutputError: the network's output holds NaN or infinite values.
        """
        volume = isinstance(image, (str, os.PathLike)) and file_suffix(os.fspath(image)) in NIFTI_SUFFIXES
        if volume and nifti_depth(image) > 1:
            if probabilities:
                raise ValueError("probabilities are given for 2D images; predict a volume's slices one by one")
            return self._predict_volume(image)
        array = self._image(image)
        (pred,) = self.runner.predictor([{"image": array}])
        labels = pred[0].numpy().astype(np.uint8)
        if not probabilities:
            return labels
        (probability,) = self._probability_predictor()([{"image": array}])
        return labels, probability.numpy().astype(np.float32)

    def _predict_volume(self, path: str | os.PathLike) -> np.ndarray:
        volume = load_nifti_volume(path, self.runner._nifti_reader, self.runner.loader.max_pixels)
        mask, _ = self.runner.segment_volume(volume)
        labels, _, _ = volume.to_file_order(mask)
        return np.asarray(labels, dtype=np.uint8)

    def _probability_predictor(self) -> SlicePredictor:
        """The command's predictor with its postprocessing cut after the inverse resize: probabilities, not labels."""
        if self._probabilities is None:
            steps = self.parser.get_parsed_content("validate#postprocessing").transforms
            cut = next(i for i, t in enumerate(steps) if isinstance(t, Invertd)) + 1
            predictor = self.runner.predictor
            self._probabilities = SlicePredictor(
                predictor.network,
                predictor.preprocessing,
                predictor.inferer,
                Compose(list(steps[:cut])),
                batch_size=predictor.batch_size,
                device=predictor.device,
                amp=predictor.amp,
            )
        return self._probabilities

    def _image(self, image: str | os.PathLike | np.ndarray | torch.Tensor) -> MetaTensor:
        """A 2D image as the command reads it: (C, H, W), finite."""
        if isinstance(image, (str, os.PathLike)):
            array = self.runner.loader(image)  # the command's reader and pixel limit
        else:
            tensor = torch.as_tensor(np.asarray(image, dtype=np.float32))
            if tensor.ndim == 3 and tensor.shape[-1] in _CHANNELS and tensor.shape[0] not in _CHANNELS:
                tensor = tensor.permute(2, 0, 1)  # (H, W, C), as PIL gives colour: no image is 1, 3 or 4 pixels high
            array = MetaTensor(tensor[None] if tensor.ndim == 2 else tensor)
        if array.ndim != 3:
            raise ValueError(f"predict takes an (H, W), (C, H, W) or (H, W, C) image, got shape {tuple(array.shape)}")
        if not bool(torch.isfinite(array).all()):
            raise ValueError("the image holds NaN or infinite values; nothing can be segmented from them")
        name = Path(image).name if isinstance(image, (str, os.PathLike)) else "the image"
        for reason in self.runner.input_fit.check(name, array):
            logger.warning("%s: flagged: %s", name, reason)
        return array

    def predict_series(self, folder: str | os.PathLike) -> SeriesResult:
        """Segment the one DICOM series in ``folder`` (the bundle's series rules pick it when there are several).

        Raises:
            ValueError: no series, or several that the rules do not narrow to one.
        """
        inputs = find_inputs(folder, self.runner.series_rules)
        if len(inputs.series) != 1:
            found = [s.label for s in inputs.series]
            raise ValueError(
                f"predict_series needs exactly one selected DICOM series in the folder, found {len(found)} {found}; "
                "pass the folder of one series, or series_description=... to choose"
            )
        volume = load_series_volume(inputs.series[0])
        mask, report = self.runner.segment_volume(volume)
        return SeriesResult(mask=mask, volume=volume, report=report)
