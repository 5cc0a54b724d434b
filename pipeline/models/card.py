"""Model cards: what a model was trained with, in a JSON file beside its weights.

``model.pt`` stays a plain state dict (MONAI's ``ckpt_export`` and ``weights_only=True`` loading depend on it). Each
weights file a training run saves gets a card with the same stem (``model.pt`` -> ``model.json``), written atomically
after the weights, that records:

- the bundle (``model_name``) and the network class;
- ``settings``: every setting inference must repeat (input size, modality, window, channel counts, threshold and the
  segment description); the ids are those of ``trained_settings`` in ``bundles/common/train.json``;
- ``data``: a fingerprint of the training data (counts, image sizes, intensity statistics, foreground share; no path
  and no DICOM attribute);
- the epoch and validation metrics at the time of saving, the best metric, the weights' SHA-256 and the versions.

Evaluation and inference read the card of the weights they load and take its settings as their defaults, so a model
trained with ``--spatial_size "[256,256]"`` predicts at 256 without the override. An override that contradicts the
card is refused (``--force_overrides true`` runs with it anyway); weights without a card load with the bundle's
settings and a warning.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import monai
import torch
from torch import nn

from pipeline.atomic import write_json
from pipeline.bundle import BUNDLES_DIR, flag, repository_bundles
from pipeline.distributed import unwrap
from pipeline.models.weights import expand_checkpoints, weights_names
from pipeline.segments import Structure, structures_from_config
from pipeline.version import __version__

__all__ = [
    "FORMAT",
    "ModelCard",
    "ModelCardError",
    "card_path",
    "card_setting",
    "card_structures",
    "check_card",
    "file_sha256",
    "network_name",
    "read_model_card",
]

logger = logging.getLogger(__name__)

FORMAT = "pipeline.models.card/1"
"""The card's ``format`` field; a reader refuses a card of another format rather than guess at its meaning."""


class ModelCardError(ValueError):
    """A card that cannot be used: unreadable, of another network, at odds with the run's settings or an ensemble."""


def card_path(weights: str | os.PathLike) -> Path:
    """The card of a weights file: same folder and stem, ``.json`` (``models/model.pt`` -> ``models/model.json``)."""
    return Path(weights).with_suffix(".json")


def network_name(network: nn.Module | type) -> str:
    """The qualified class name of a network, e.g. ``monai.networks.nets.unet.UNet``."""
    cls = network if isinstance(network, type) else type(network)
    return f"{cls.__module__}.{cls.__qualname__}"


def _plain(value: Any) -> Any:
    """``value`` as JSON holds it (tuples become lists, numpy and torch scalars numbers)."""
    return json.loads(json.dumps(value, default=lambda v: v.tolist() if hasattr(v, "tolist") else str(v)))


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file, in hex, read in 1 MiB blocks: the card's ``sha256`` of its weights."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


_CONFIG_SIGILS = ("$", "@", "%")
"""How a MONAI config marks an expression, a reference and a macro: a card's values never start with one."""


def _refuse_config_syntax(value: Any, path: Path, where: str = "") -> None:
    """Raise :class:`ModelCardError` when a card value would mean code to a MONAI config: a string that starts with
    ``$``, ``@`` or ``%``, or a key such as ``_target_``. Card settings are written into packaged configs; a card
    stays data however it was made."""
    if isinstance(value, str) and value.startswith(_CONFIG_SIGILS):
        raise ModelCardError(
            f"{path}: field {where or 'value'!r} holds config syntax ({value[:40]!r}); a model card "
            "holds values only, refusing it"
        )
    if isinstance(value, Mapping):
        for key, item in value.items():
            name = f"{where}#{key}" if where else str(key)
            if str(key).startswith("_") and str(key).endswith("_"):
                raise ModelCardError(
                    f"{path}: field {name!r} is a config keyword; a model card holds values only, refusing it"
                )
            _refuse_config_syntax(item, path, name)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _refuse_config_syntax(item, path, f"{where}#{index}")


def _show(value: Any) -> str:
    return json.dumps(value, separators=(", ", ": "))


@dataclass
class ModelCard:
    """What one set of weights was trained with.

    Attributes:
        model_name: the bundle that trained it (``unet``, ``cenet``...).
        network: the network's qualified class name (:func:`network_name`).
        settings: setting id -> value, e.g. ``{"spatial_size": [256, 256], "modality": "CT", ...}``.
        data: the training data fingerprint (:meth:`pipeline.intake.DatasetReport.fingerprint`).
        epoch: the training epoch whose weights these are.
        metrics: the validation metrics of that epoch.
        best_metric: the best key metric the run had reached when the file was saved.
        weights: the weights file's name (never its path).
        sha256: the weights file's SHA-256.
        versions: pipeline, MONAI and torch versions of the run.
        created: when the card was written (UTC, ISO 8601).
        source: the card file it was read from (not written).
    """

    model_name: str | None = None
    network: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    epoch: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    best_metric: float | None = None
    weights: str | None = None
    sha256: str | None = None
    versions: dict[str, str] = field(default_factory=dict)
    created: str | None = None
    source: Path | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.network, nn.Module):
            self.network = network_name(unwrap(self.network))
        self.settings = _plain(dict(self.settings))

    @property
    def found(self) -> bool:
        """Whether this card was read from a file (an empty card stands for weights without one)."""
        return self.source is not None

    def bundle_dir(self) -> Path:
        """The repository bundle that trained these weights: ``bundles/<model_name>``.

        A card is data, however it arrived: its ``model_name`` is looked up among the repository's bundles
        (:func:`pipeline.bundle.repository_bundles`), never joined to a path, so a card cannot point a loader at a
        config of its writer's choosing.

        Raises:
            ModelCardError: naming the card and the field, when ``model_name`` is not one of the repository's bundles
                (a path, a folder, a name this checkout does not have).
        """
        known = repository_bundles()
        if isinstance(self.model_name, str) and self.model_name in known:
            return BUNDLES_DIR / self.model_name
        where = self.source or "the model card"
        raise ModelCardError(
            f"{where}: field 'model_name' is {self.model_name!r}, which is not one of this repository's bundles "
            f"({', '.join(known) or 'none found'}); a card only names a bundle. To use another bundle's configs, "
            "pass its folder yourself (Segmenter(..., bundle=<folder>), or run that bundle's inference.json)"
        )

    def setting(self, name: str, default: Any) -> Any:
        """The trained value of a setting, or ``default`` when the card does not record it.

        Args:
            name: a setting id; ``#`` reaches into a nested one (``segment#label``), as MONAI ids do (MONAI hands
                ``#`` inside a config expression over as ``::``, which works too).
            default: the bundle's own value.
        """
        value: Any = self.settings
        for key in name.replace("::", "#").split("#"):
            if not isinstance(value, Mapping) or key not in value:
                return default
            value = value[key]
        return value

    def to_dict(self) -> dict[str, Any]:
        out = {"format": FORMAT, **asdict(self)}
        out.pop("source")
        return out

    def write(
        self, weights: str | os.PathLike, epoch: int | None = None, metrics: Mapping | None = None, **extra: Any
    ) -> Path:
        """Write this card beside ``weights`` (atomically), describing that file as saved at ``epoch``.

        Args:
            weights: the weights file just saved.
            epoch: its training epoch.
            metrics: its validation metrics (non-numbers are left out).
            extra: other fields to set, e.g. ``best_metric``.

        Returns:
            The card's path.
        """
        weights = Path(weights)
        numbers = {k: float(v) for k, v in (metrics or {}).items() if isinstance(v, (int, float))}
        card = ModelCard(**{**asdict(self), "source": None, **extra})
        card.epoch, card.metrics, card.weights, card.sha256 = epoch, numbers, weights.name, file_sha256(weights)
        card.versions = {"pipeline": __version__, "monai": monai.__version__, "torch": torch.__version__}
        card.created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        return write_json(card.to_dict(), card_path(weights))

    @classmethod
    def read(cls, weights: str | os.PathLike) -> ModelCard:
        """The card beside ``weights``; an empty card (``found`` false) when there is none.

        Raises:
            ModelCardError: naming the file, when the card exists but is not valid JSON or not a card of this format.
        """
        path = card_path(weights)
        if not path.is_file():
            return cls()
        try:
            obj = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ModelCardError(f"{path} (the model card of {Path(weights).name}) is unreadable: {e}") from e
        if not isinstance(obj, dict) or obj.get("format") != FORMAT:
            found = obj.get("format") if isinstance(obj, dict) else type(obj).__name__
            raise ModelCardError(
                f"{path} is not a model card of format {FORMAT} (found {found!r}); move it away to load "
                f"{Path(weights).name} with the bundle's settings"
            )
        _refuse_config_syntax(obj, path)
        fields = {k: v for k, v in obj.items() if k in cls.__dataclass_fields__ and k != "source"}
        card = cls(**fields, source=path)
        describes = card.weights in (None, Path(weights).name)  # an export (model.onnx) shares its weights' card
        replaced = card.sha256 is not None and Path(weights).is_file() and file_sha256(Path(weights)) != card.sha256
        if describes and replaced:
            logger.warning(
                "%s describes another version of %s (the weights were replaced after the card was written); its "
                "settings are used, its metrics may be stale",
                path.name,
                Path(weights).name,
            )
        return card

    def check(
        self,
        settings: Mapping[str, Any],
        network: nn.Module | None = None,
        model_name: str | None = None,
        force: bool = False,
    ) -> None:
        """Refuse a run whose settings or network contradict this card.

        A run's settings default to the card's (:meth:`setting`), so a difference comes from an override.

        Args:
            settings: the run's resolved settings, by id (``trained_settings`` in the bundle configs).
            network: the run's network, to compare classes.
            model_name: the run's bundle, named in the message.
            force: log the differences as warnings instead of refusing.

        Raises:
            ModelCardError: listing every setting that differs (trained value, this run's value) and how to force it;
                or naming the bundle to use when the network class differs (not forceable: the weights cannot load).
        """
        if not self.found:
            return
        weights = self.weights or self.source.name
        if network is not None and self.network is not None and network_name(network) != self.network:
            raise ModelCardError(
                f"{weights} holds a {self.network.rsplit('.', 1)[-1]} trained by bundle {self.model_name}, but this "
                f"is bundle {model_name} ({type(network).__name__}): run bundles/{self.model_name}'s config instead"
            )
        ours = _plain(dict(settings))
        differ = [
            f"{name}: trained with {_show(trained)}, this run has {_show(ours[name])}"
            for name, trained in self.settings.items()
            if name in ours and ours[name] != trained
        ]
        if not differ:
            return
        message = f"{weights} was trained with other settings than this run ({self.source}):\n  " + "\n  ".join(differ)
        if force:
            logger.warning("%s\n--force_overrides true: running with this run's settings", message)
            return
        raise ModelCardError(
            f"{message}\nDrop the override(s) to use the trained settings, or pass --force_overrides true to run "
            "with yours anyway (the masks may be wrong)."
        )


def read_model_card(checkpoints: str | os.PathLike | Sequence[str | os.PathLike]) -> ModelCard:
    """The card of the weights a workflow loads: one file, or an ensemble whose members must agree.

    Args:
        checkpoints: a weights file or a list of them (glob patterns allowed, as in
            :func:`pipeline.models.weights.expand_checkpoints`).

    Returns:
        The first member's card, or an empty card (``found`` false, logged as a warning) when no member has one.

    Raises:
        ModelCardError: a card is unreadable, or two members were trained with different settings or networks.
    """
    if isinstance(checkpoints, (str, os.PathLike)):
        checkpoints = [checkpoints]
    paths = expand_checkpoints(checkpoints)
    cards = [ModelCard.read(p) for p in paths]
    names = weights_names(paths) if len(paths) > 1 else [Path(p).name for p in paths]
    found = [(n, c) for n, c in zip(names, cards, strict=True) if c.found]
    missing = [n for n, c in zip(names, cards, strict=True) if not c.found]
    if missing:
        logger.warning(
            "no model card beside %s: using this bundle's settings. Weights trained with other settings "
            "(--spatial_size, --modality, --window...) give wrong masks without an error",
            ", ".join(missing),
        )
    if not found:
        return ModelCard()
    first_name, first = found[0]
    for name, card in found[1:]:
        if (card.network, card.settings) != (first.network, first.settings):
            differ = sorted(
                k for k in {*card.settings, *first.settings} if card.settings.get(k) != first.settings.get(k)
            )
            differ += ["network"] if card.network != first.network else []
            raise ModelCardError(
                f"the ensemble's members were trained differently: {first_name} and {name} differ in "
                f"{', '.join(differ)}; ensemble models trained with the same settings"
            )
    return first


def check_card(
    card: ModelCard,
    settings: Mapping[str, Any],
    network: nn.Module | None = None,
    model_name: str | None = None,
    force: bool | str = False,
) -> None:
    """:meth:`ModelCard.check` as evaluation and inference run it: ``force`` is the ``--force_overrides`` setting as
    typed (:func:`pipeline.bundle.flag`).

    Raises:
        ModelCardError: as :meth:`ModelCard.check`.
    """
    card.check(settings, network=network, model_name=model_name, force=flag(force, "force_overrides"))


def card_setting(card: ModelCard, name: str, default: Any) -> Any:
    """:meth:`ModelCard.setting` for a config whose default is an object the config builds (the structures of a
    dataset, the channels they need): evaluation and inference take the trained value, else that default.

    A card written before structures were recorded has no ``structures``: its weights segment the one structure its
    ``segment`` describes (binary), whatever the data the config points at holds.

    ``default`` may be a callable that builds the value (the configs pass it with MONAI's ``"_mode_": "callable"``):
    it is called only when the card lacks the setting, so weights with a card never read the data for it.
    """
    if name == "structures" and card.found:
        return [s.to_config() for s in card_structures(card)]
    value = card.setting(name, _MISSING)
    if value is _MISSING:
        return default() if callable(default) else default
    return value


_MISSING = object()


def card_structures(card: ModelCard) -> list[Structure]:
    """What the weights of ``card`` segment: the structures it records, or, for a card written before structures were
    recorded, the one structure its ``segment`` describes."""
    return structures_from_config(card.settings.get("structures"), card.settings.get("segment"))
