"""Structures: named by what they are, valued as the dataset labels them, one of them the special case of several."""

from __future__ import annotations

import pytest

from pipeline.segments import (
    KNOWN_STRUCTURES,
    SEGMENTS,
    Structure,
    describe,
    has_sides,
    is_binary,
    is_multiclass,
    label_values,
    onehot_classes,
    output_channels,
    structures_from_config,
    structures_from_labels,
)

JSRT = {"0": "background", "1": "right lung", "2": "left lung", "3": "heart"}
ACDC = {"0": "background", "1": "right ventricle cavity", "2": "myocardium", "3": "left ventricle cavity"}

KNOWN = [
    ("right lung", "3341006", "Right lung"),
    ("Left_Lung", "44029006", "Left_Lung"),
    ("heart", "80891009", "Heart"),
    ("myocardium", "49848007", "Myocardium"),
    ("left ventricle cavity", "87878005", "Left ventricle cavity"),
    ("right-ventricle-cavity", "53085002", "Right-ventricle-cavity"),
    ("polyp", "68496003", "Polyp"),
    ("lung", "39607008", "Lung"),
]


@pytest.mark.parametrize("name, code, label", KNOWN)
def test_known_structures_keep_their_codes(name, code, label):
    described = describe(name)
    assert described.property_type[0] == code and described.label == label
    assert described.category == ("91723000", "Anatomical Structure") or name == "polyp"


def test_an_unknown_structure_gets_the_generic_code_and_a_colour_of_its_own():
    first, second = describe("tumour core", index=0), describe("oedema", index=1)
    assert first.property_type == ("85756007", "Tissue") == second.property_type
    assert first.label == "Tumour core" and first.color != second.color


def test_every_known_structure_has_a_valid_colour():
    for described in KNOWN_STRUCTURES.values():
        assert len(described.color) == 3 and all(0 <= c <= 255 for c in described.color)


@pytest.mark.parametrize(
    "labels, values, names",
    [
        (JSRT, (1, 2, 3), ["Right lung", "Left lung", "Heart"]),
        (ACDC, (1, 2, 3), ["Right ventricle cavity", "Myocardium", "Left ventricle cavity"]),
        ({3: "liver", 1: "spleen"}, (1, 3), ["Spleen", "Liver"]),  # numbers as keys, sorted by value
        ({"0": "background", "255": "lung"}, (255,), ["Lung"]),
    ],
)
def test_structures_from_a_labels_map(labels, values, names):
    structures = structures_from_labels(labels)
    assert label_values(structures) == values and [s.label for s in structures] == names


@pytest.mark.parametrize(
    "labels, message",
    [
        ({"0": "background"}, "names no structure"),
        ({"1": "lung", "2": "Lung"}, "given to two values"),
        ({"x": "lung"}, "not a label value"),
        ({"256": "lung"}, "not a label value"),
        ({"1.5": "lung"}, "not a label value"),
        ({"1": ""}, "non-empty string"),
        ("right lung", "must map label values"),
    ],
)
def test_bad_labels_maps_are_refused(labels, message):
    with pytest.raises(ValueError, match=message):
        structures_from_labels(labels)


def test_without_structures_the_segment_is_the_one_structure_of_value_1():
    (structure,) = structures_from_config(None, SEGMENTS["polyp"])
    assert structure.value == 1 and structure.label == "Polyp"
    again = structures_from_config([structure.to_config()])
    assert again == [structure] and Structure.from_config(structure.to_config()) == structure


def test_structures_from_config_refuse_a_repeated_value():
    with pytest.raises(ValueError, match="share a label value"):
        structures_from_config([{"value": 1, "label": "a"}, {"value": 1, "label": "b"}])


@pytest.mark.parametrize("count, channels, onehot", [(1, 1, None), (2, 3, 3), (3, 4, 4), (12, 13, 13)])
def test_one_structure_is_the_special_case(count, channels, onehot):
    structures = [{"value": v, "label": f"s{v}"} for v in range(1, count + 1)]
    assert output_channels(structures) == channels and onehot_classes(structures) == onehot
    assert is_binary(structures) is (count == 1) and is_multiclass(structures) is (count > 1)


@pytest.mark.parametrize(
    "names, sided",
    [
        (["lung"], False),
        (["right lung", "left lung", "heart"], True),
        (["right ventricle cavity", "myocardium", "left ventricle cavity"], True),
        (["liver", "spleen"], False),
        (["Upright structure"], False),  # the word, not the letters
    ],
)
def test_structures_with_sides(names, sided):
    assert has_sides(structures_from_labels({str(i + 1): n for i, n in enumerate(names)})) is sided
