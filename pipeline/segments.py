"""What a model segments: the label, SNOMED CT codes and display colour written into DICOM SEG and the reports.

A dataset recipe records its segment in ``datalist.json`` (``"segment"``), training records it in the model card, and
inference writes it. :data:`SEGMENTS` holds the descriptions the recipes use; codes are from DICOM CID 7150
(Segmentation Property Categories) and CID 7151 / 6201 (property types).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["SEGMENTS", "SegmentDescription"]

_KEYS = ("label", "category", "property_type", "color")


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
    category: tuple[str, str] = ("91723000", "Anatomical Structure")
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
        fields: dict[str, Any] = {}
        if "label" in segment:
            if not isinstance(segment["label"], str) or not segment["label"].strip():
                raise ValueError(f"segment label must be a non-empty string, got {segment['label']!r}")
            fields["label"] = segment["label"].strip()
        for key in ("category", "property_type"):
            if key in segment:
                value = segment[key]
                if isinstance(value, str) or len(value) != 2 or not all(str(v).strip() for v in value):
                    raise ValueError(f"segment {key} must be a [SNOMED code, meaning] pair, got {value!r}")
                fields[key] = (str(value[0]), str(value[1]))
        if "color" in segment:
            value = segment["color"]
            if (
                isinstance(value, str)
                or len(value) != 3
                or not all(isinstance(v, int) and 0 <= v <= 255 for v in value)
            ):
                raise ValueError(f"segment color must be [R, G, B] whole numbers in 0-255, got {value!r}")
            fields["color"] = tuple(value)
        return cls(**fields)

    def to_config(self) -> dict[str, Any]:
        """The description as a JSON-ready dict (lists for pairs), the inverse of :meth:`from_config`."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


SEGMENTS: dict[str, SegmentDescription] = {
    "lung": SegmentDescription(),
    "polyp": SegmentDescription(
        "Polyp", ("49755003", "Morphologically Altered Structure"), ("68496003", "Polyp of colon"), (216, 101, 79)
    ),
    "tissue": SegmentDescription("Tissue", ("85756007", "Tissue"), ("85756007", "Tissue"), (128, 174, 128)),
}
"""Segment descriptions by name: ``lung`` (the bundles' default, the lung recipes), ``polyp`` (Kvasir) and ``tissue``
(the ``folder`` recipe's default: a generic foreground, to be replaced in the datalist by what the masks hold)."""
