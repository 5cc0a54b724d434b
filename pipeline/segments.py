"""What a model segments: each structure's label value, name, SNOMED CT codes and display colour.

A dataset declares its structures with a decathlon-style ``labels`` map in its datalist (``{"0": "background",
"1": "right lung", "2": "left lung"}``), or a recipe records one ``"segment"`` for a binary mask. Training records the
structures in the model card, and inference writes them into DICOM SEG (one segment per structure), the label
volumes and the reports. Structures this project knows (:data:`KNOWN_STRUCTURES`: lungs, each lung, heart, the
cardiac chambers and myocardium, polyp...) keep their codes and colour; any other name gets the generic "Tissue" code
and a colour of its own (:func:`describe`). Codes are from DICOM CID 7150 (categories) and CID 7151, 7152 and 6201
(types), SNOMED CT.

One structure is the special case of several: a binary model has one output channel (sigmoid) for the structure of
value 1; a model of ``K`` structures has ``K + 1`` (softmax), channel 0 the background and channel ``c`` the
structure of the ``c``-th smallest label value (:func:`output_channels`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

__all__ = [
    "KNOWN_STRUCTURES",
    "SEGMENTS",
    "SegmentDescription",
    "Structure",
    "describe",
    "has_sides",
    "is_binary",
    "is_multiclass",
    "label_values",
    "onehot_classes",
    "output_channels",
    "structures_from_config",
    "structures_from_labels",
]

_KEYS = ("label", "category", "property_type", "color")
_ANATOMY = ("91723000", "Anatomical Structure")
_TISSUE = ("85756007", "Tissue")


@dataclass(frozen=True)
class SegmentDescription:
    """What the model segments, for the DICOM SEG segment description and the reports.

    Attributes:
        label: segment label, e.g. ``"Lung"``.
        category: SNOMED CT (code, meaning) of the segmented property category, e.g.
            ``("91723000", "Anatomical Structure")``.
        property_type: SNOMED CT (code, meaning) of the segmented property type, e.g.
            ``("39607008", "Lung structure")``.
        color: recommended display colour, (R, G, B) in 0-255; written to the SEG as CIELab.
    """

    label: str = "Lung"
    category: tuple[str, str] = _ANATOMY
    property_type: tuple[str, str] = ("39607008", "Lung structure")
    color: tuple[int, int, int] = (197, 165, 145)

    @classmethod
    def from_config(cls, segment: SegmentDescription | Mapping[str, Any] | None) -> SegmentDescription:
        """A description from a config's or datalist's ``segment`` (``{"label", "category", "property_type",
        "color"}``; a missing key keeps the default).

        Raises:
            ValueError: an unknown key, an empty label, a code that is not a (code, meaning) pair, or a colour that is
                not three whole numbers in 0-255.
        """
        if segment is None or isinstance(segment, SegmentDescription):
            return segment or cls()
        if not isinstance(segment, Mapping):
            raise ValueError(f"segment must be a dict with {', '.join(_KEYS)}, got {segment!r}")
        unknown = sorted(set(segment) - set(_KEYS))
        if unknown:
            raise ValueError(f"segment has unknown key(s) {unknown}: use {', '.join(_KEYS)}")
        return cls(**_fields(segment, "segment"))

    def to_config(self) -> dict[str, Any]:
        """The description as a JSON-ready dict (lists for pairs), the inverse of :meth:`from_config`."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class Structure(SegmentDescription):
    """One structure of a label map: its value there, and its description.

    Attributes:
        value: the structure's value in the dataset's label maps (1-255; 0 is the background).
    """

    value: int = 1

    @classmethod
    def from_config(cls, structure: Structure | Mapping[str, Any] | None) -> Structure:  # type: ignore[override]
        """A structure from a model card's or config's ``structures`` entry (``{"value", "label", "category",
        "property_type", "color"}``).

        Raises:
            ValueError: as :meth:`SegmentDescription.from_config`, or a value that is not a whole number in 1-255.
        """
        if isinstance(structure, Structure):
            return structure
        if not isinstance(structure, Mapping):
            raise ValueError(f"a structure must be a dict with value, {', '.join(_KEYS)}, got {structure!r}")
        unknown = sorted(set(structure) - {"value", *_KEYS})
        if unknown:
            raise ValueError(f"structure has unknown key(s) {unknown}: use value, {', '.join(_KEYS)}")
        value = structure.get("value", 1)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 255:
            raise ValueError(f"a structure's value must be a whole number in 1-255, got {value!r}")
        return cls(value=value, **_fields(structure, "structure"))


def _fields(given: Mapping[str, Any], what: str) -> dict[str, Any]:
    """The description fields of ``given``, checked."""
    fields: dict[str, Any] = {}
    if "label" in given:
        if not isinstance(given["label"], str) or not given["label"].strip():
            raise ValueError(f"{what} label must be a non-empty string, got {given['label']!r}")
        fields["label"] = given["label"].strip()
    for key in ("category", "property_type"):
        if key in given:
            value = given[key]
            if isinstance(value, str) or len(value) != 2 or not all(str(v).strip() for v in value):
                raise ValueError(f"{what} {key} must be a [SNOMED code, meaning] pair, got {value!r}")
            fields[key] = (str(value[0]), str(value[1]))
    if "color" in given:
        value = given["color"]
        if isinstance(value, str) or len(value) != 3 or not all(isinstance(v, int) and 0 <= v <= 255 for v in value):
            raise ValueError(f"{what} color must be [R, G, B] whole numbers in 0-255, got {value!r}")
        fields["color"] = tuple(value)
    return fields


SEGMENTS: dict[str, SegmentDescription] = {
    "lung": SegmentDescription(),
    "polyp": SegmentDescription(
        "Polyp", ("49755003", "Morphologically Altered Structure"), ("68496003", "Polyp of colon"), (216, 101, 79)
    ),
    "tissue": SegmentDescription("Tissue", _TISSUE, _TISSUE, (128, 174, 128)),
}
"""Segment descriptions by name: ``lung`` (the bundles' default, the lung recipes), ``polyp`` (Kvasir) and ``tissue``
(the ``folder`` recipe's default: a generic foreground, to be replaced in the datalist by what the masks hold)."""


def _anatomy(label: str, code: str, meaning: str, color: tuple[int, int, int]) -> SegmentDescription:
    return SegmentDescription(label, _ANATOMY, (code, meaning), color)


KNOWN_STRUCTURES: dict[str, SegmentDescription] = {
    "lung": SEGMENTS["lung"],
    "lungs": SEGMENTS["lung"],
    "right lung": _anatomy("Right lung", "3341006", "Right lung", (128, 174, 128)),
    "left lung": _anatomy("Left lung", "44029006", "Left lung", (241, 214, 145)),
    "heart": _anatomy("Heart", "80891009", "Heart", (206, 110, 84)),
    "left ventricle": _anatomy("Left ventricle", "87878005", "Left ventricle", (221, 130, 101)),
    "left ventricle cavity": _anatomy("Left ventricle cavity", "87878005", "Left ventricle", (221, 130, 101)),
    "right ventricle": _anatomy("Right ventricle", "53085002", "Right ventricle", (0, 151, 206)),
    "right ventricle cavity": _anatomy("Right ventricle cavity", "53085002", "Right ventricle", (0, 151, 206)),
    "myocardium": _anatomy("Myocardium", "49848007", "Left Ventricle Myocardium", (241, 214, 145)),
    "left ventricle myocardium": _anatomy("Myocardium", "49848007", "Left Ventricle Myocardium", (241, 214, 145)),
    "trachea": _anatomy("Trachea", "44567001", "Trachea", (182, 228, 255)),
    "aorta": _anatomy("Aorta", "15825003", "Aorta", (224, 97, 76)),
    "esophagus": _anatomy("Esophagus", "32849002", "Esophagus", (211, 171, 143)),
    "liver": _anatomy("Liver", "10200004", "Liver", (221, 130, 101)),
    "spleen": _anatomy("Spleen", "78961009", "Spleen", (157, 108, 162)),
    "kidney": _anatomy("Kidney", "64033007", "Kidney", (185, 102, 83)),
    "stomach": _anatomy("Stomach", "69695003", "Stomach", (216, 132, 105)),
    "pancreas": _anatomy("Pancreas", "15776009", "Pancreas", (249, 180, 111)),
    "bone": _anatomy("Bone", "272673000", "Bone", (241, 214, 145)),
    "polyp": SEGMENTS["polyp"],
    "tissue": SEGMENTS["tissue"],
}
"""The structures this project names by what they are, by lower-case name (``right_lung`` and ``Right-Lung`` find
``right lung``): SNOMED CT category and type from DICOM CID 7150, 7151 and 7152, and a display colour."""

# Colours for structures of no known name, in turn: distinct on grey images and from each other.
_PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240),
    (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255), (170, 110, 40), (255, 250, 200),
    (128, 0, 0), (170, 255, 195), (128, 128, 0), (255, 215, 180), (0, 0, 128), (128, 128, 128),
)  # fmt: skip


def _normal(name: str) -> str:
    return " ".join(name.replace("_", " ").replace("-", " ").lower().split())


def describe(name: str, index: int = 0) -> SegmentDescription:
    """The description of a structure named ``name``: a known one's (:data:`KNOWN_STRUCTURES`) with the label as
    written, else the generic "Tissue" code and the ``index``-th colour of a fixed palette.

    Args:
        name: the structure's name, e.g. ``"right lung"`` or ``"tumour core"``.
        index: picks the colour of an unknown structure (its place among the dataset's structures).
    """
    label = name.strip()
    known = KNOWN_STRUCTURES.get(_normal(name))
    if known is not None:
        return replace(known, label=label[:1].upper() + label[1:])
    return SegmentDescription(label[:1].upper() + label[1:], _TISSUE, _TISSUE, _PALETTE[index % len(_PALETTE)])


def structures_from_labels(labels: Mapping[Any, Any]) -> list[Structure]:
    """The structures of a decathlon-style ``labels`` map, by value; value 0 (the background) is left out.

    Args:
        labels: label value -> name, keys as strings or numbers (``{"0": "background", "1": "right lung"}``); a value
            may instead map to a dict with the description fields (``{"label": ..., "property_type": [...], ...}``).

    Raises:
        ValueError: naming the entry, for a value that is not a whole number in 0-255, an empty or repeated name, or
            a map with no structure besides the background.
    """
    if not isinstance(labels, Mapping):
        raise ValueError(f"labels must map label values to names, e.g. {{'1': 'right lung'}}, got {labels!r}")
    found: dict[int, Structure] = {}
    names: set[str] = set()
    for key, entry in labels.items():
        try:
            value = int(str(key).strip())
        except ValueError:
            value = -1
        if isinstance(key, bool) or not 0 <= value <= 255 or str(value) != str(key).strip():
            raise ValueError(f"labels: {key!r} is not a label value (a whole number in 0-255)")
        if value == 0:
            continue
        if isinstance(entry, Mapping):
            described = SegmentDescription.from_config({"label": entry.get("label", ""), **entry})
        elif isinstance(entry, str) and entry.strip():
            described = describe(entry, index=len(found))
        else:
            raise ValueError(f"labels: the name of value {value} must be a non-empty string, got {entry!r}")
        if _normal(described.label) in names:
            raise ValueError(f"labels: the name {described.label!r} is given to two values")
        names.add(_normal(described.label))
        found[value] = Structure(value=value, **{k: getattr(described, k) for k in _KEYS})
    if not found:
        raise ValueError(f"labels: {dict(labels)} names no structure besides the background (value 0)")
    return [found[v] for v in sorted(found)]


def structures_from_config(
    structures: Sequence[Structure | Mapping[str, Any]] | None, segment: SegmentDescription | Mapping | None = None
) -> list[Structure]:
    """The structures a config or model card records; without any, the one structure of value 1 that ``segment``
    describes (the form of every binary model, and of cards written before structures were recorded).

    Raises:
        ValueError: a malformed entry, or two structures with one value.
    """
    if not structures:
        return [Structure(value=1, **asdict(SegmentDescription.from_config(segment)))]
    parsed = [Structure.from_config(s) for s in structures]
    values = [s.value for s in parsed]
    if len(set(values)) != len(values):
        raise ValueError(f"two structures share a label value: {values}")
    return sorted(parsed, key=lambda s: s.value)


def output_channels(structures: Sequence[Structure | Mapping[str, Any]]) -> int:
    """A network's output channels for ``structures``: 1 (sigmoid) for one, ``K + 1`` (softmax, background first)
    for ``K`` of them."""
    return 1 if len(structures) == 1 else len(structures) + 1


def is_multiclass(structures: Sequence[Structure | Mapping[str, Any]]) -> bool:
    """Whether ``structures`` are several (softmax over background and structures) rather than one (sigmoid)."""
    return len(structures) > 1


def has_sides(structures: Sequence[Structure | Mapping[str, Any]]) -> bool:
    """Whether ``structures`` tell the patient's sides apart: a name holds the word "right" or "left" (right lung,
    left ventricle...).

    A left-right mirrored image shows the patient's right on the other side, so mirroring such a model's inputs
    would teach it (in training) or ask it (in flip test-time augmentation) to call the left lung the right one: the
    bundles mirror only up-down for them.
    """
    return any({"right", "left"} & set(_normal(s.label).split()) for s in structures_from_config(structures))


def label_values(structures: Sequence[int | Structure | Mapping[str, Any]]) -> tuple[int, ...]:
    """The label values of ``structures``, in order: whole numbers as they are, structures (or their dicts) by
    ``value``."""
    return tuple(
        int(s) if isinstance(s, int) else int(s["value"] if isinstance(s, Mapping) else s.value) for s in structures
    )


def is_binary(structures: Sequence[Structure | Mapping[str, Any]]) -> bool:
    """Whether ``structures`` are one (a binary model: one sigmoid channel, no background channel)."""
    return len(structures) == 1


def onehot_classes(structures: Sequence[Structure | Mapping[str, Any]]) -> int | None:
    """The one-hot channels of a model of several structures' predictions and labels (``K + 1``); ``None`` for one
    structure, whose single channel is already its mask."""
    return len(structures) + 1 if len(structures) > 1 else None
