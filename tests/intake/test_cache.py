"""The training cache: in memory or on disk by size, the same items either way, reused across runs, never stale."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.data import CacheDataset, PersistentDataset
from monai.transforms import CastToTyped, Compose, RandFlipd, Resized

from pipeline.demo import write_demo_dataset
from pipeline.intake import cache as cache_module
from pipeline.intake import cached_dataset, estimated_cache_bytes, training_transforms
from pipeline.intake.datalist import load_datalist
from pipeline.io import LoadSliced
from pipeline.transforms import AfterCache, ScaleIntensityForModalityd

SETTINGS = {"spatial_size": [32, 32], "window": [-1000, 400]}


@pytest.fixture(scope="module")
def items(tmp_path_factory) -> list[dict]:
    dataset = write_demo_dataset(tmp_path_factory.mktemp("cache"), num_cases=4, size=64, val_fraction=0.25, seed=2)
    return [{"image": i["image"], "label": i["label"]} for i in load_datalist(dataset)]


def _transform() -> Compose:
    return Compose(
        [
            LoadSliced(keys=["image", "label"]),
            ScaleIntensityForModalityd(keys="image", modality="CT", window=(-1000, 400)),
            Resized(keys=["image", "label"], spatial_size=(32, 32)),
            CastToTyped(keys=["image", "label"], dtype=torch.float16),
            AfterCache(CastToTyped(keys=["image", "label"], dtype=torch.float32)),
            RandFlipd(keys=["image", "label"], prob=0.0),
        ]
    )


@pytest.mark.parametrize(
    "cache, budget, expected",
    [
        ("memory", None, CacheDataset),
        ("disk", None, PersistentDataset),
        ("auto", 10**12, CacheDataset),
        ("auto", 1000, PersistentDataset),  # 4 items of 32 x 32 do not fit in 1,000 bytes
    ],
)
def test_the_cache_is_chosen_by_mode_and_size(items, tmp_path, cache, budget, expected) -> None:
    dataset = cached_dataset(
        items, _transform(), cache, tmp_path / "cache", SETTINGS, spatial_size=(32, 32), memory_budget=budget
    )
    assert type(dataset) is expected


def test_processes_on_one_machine_count_against_its_memory(items, tmp_path, monkeypatch) -> None:
    budget = int(estimated_cache_bytes(len(items), (32, 32), 1) * 1.5)  # room for one process's cache, not two
    choose = lambda: cached_dataset(  # noqa: E731
        items, _transform(), "auto", tmp_path / "cache", SETTINGS, spatial_size=(32, 32), memory_budget=budget
    )
    assert isinstance(choose(), CacheDataset)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert isinstance(choose(), PersistentDataset)


def test_disk_items_equal_memory_items_and_are_reused(items, tmp_path) -> None:
    memory = cached_dataset(items, _transform(), "memory")
    disk = cached_dataset(items, _transform(), "disk", tmp_path / "cache", SETTINGS)
    for a, b in zip(memory, disk, strict=True):
        assert b["image"].dtype == torch.float32 and torch.equal(torch.as_tensor(a["image"]), b["image"])
        assert torch.equal(torch.as_tensor(a["label"]), b["label"])
    (folder,) = (tmp_path / "cache").iterdir()
    files = {p.name: p.stat().st_mtime_ns for p in folder.glob("*.pt")}
    assert len(files) == len(items)

    again = cached_dataset(items, _transform(), "disk", tmp_path / "cache", SETTINGS)  # the next run
    _ = [again[i] for i in range(len(items))]
    assert {p.name: p.stat().st_mtime_ns for p in folder.glob("*.pt")} == files  # read back, not rewritten

    other = cached_dataset(items, _transform(), "disk", tmp_path / "cache", {**SETTINGS, "spatial_size": [64, 64]})
    _ = other[0]
    assert len(list((tmp_path / "cache").iterdir())) == 2  # other settings never read this cache


def test_a_replaced_file_is_not_served_from_the_disk_cache(items, tmp_path) -> None:
    first = dict(items[0])
    copy = tmp_path / "copy.tif"
    copy.write_bytes(Path(first["image"]).read_bytes())
    first["image"] = str(copy)
    before = cached_dataset([first], _transform(), "disk", tmp_path / "cache", SETTINGS)[0]["image"]
    other = Path(items[1]["image"]).read_bytes()
    copy.write_bytes(other)
    os.utime(copy, ns=(copy.stat().st_atime_ns, copy.stat().st_mtime_ns + 10**9))
    after = cached_dataset([first], _transform(), "disk", tmp_path / "cache", SETTINGS)[0]["image"]
    assert not torch.equal(before, after)


def test_bad_modes_and_the_estimate(items, tmp_path) -> None:
    with pytest.raises(ValueError, match="--cache 'ram': use one of auto, memory, disk"):
        cached_dataset(items, _transform(), "ram")
    with pytest.raises(ValueError, match="--cache_dir"):
        cached_dataset(items, _transform(), "disk", None)
    # 20,000 slices of 256 x 256 in float16, image and mask, with MONAI's metadata: about 7.8 GiB
    assert estimated_cache_bytes(20000, (256, 256), 1) / 2**30 == pytest.approx(7.74, abs=0.01)
    # three structures: four one-hot target channels instead of one mask (7.32 GiB more)
    assert estimated_cache_bytes(20000, (256, 256), 1, label_channels=4) / 2**30 == pytest.approx(15.06, abs=0.01)


def test_the_bundles_cache_choice_counts_the_target_channels(tmp_path, bundle_workflow) -> None:
    """The demo's three structures cache four target channels per slice: the choice between memory and disk (made
    once, by ``cache_kind``) must count them."""
    workflow = bundle_workflow("train", output_dir=str(tmp_path / "out"), demo_dir=str(tmp_path / "demo"))
    assert workflow.parser.get_parsed_content("cache_kind#label_channels") == 4


def test_training_with_the_cache_on_disk(run_bundle, tmp_path) -> None:
    dataset = write_demo_dataset(tmp_path / "data", num_cases=6, size=64, val_fraction=0.34, seed=5)
    run_bundle("train", dataset_dir=str(dataset), output_dir=str(tmp_path / "out"), cache="disk")
    (folder,) = (tmp_path / "out" / "cache").iterdir()
    assert len(list(folder.glob("*.pt"))) == 4  # the 4 training slices
    (run,) = (tmp_path / "out" / "runs").iterdir()
    assert json.loads((run / "summary.json").read_text())["status"] == "finished"
    assert np.isfinite(json.loads((run / "summary.json").read_text())["last"]["loss"])


def test_a_new_cache_format_never_reads_the_old_cache(items, tmp_path, monkeypatch) -> None:
    """Tensors that the code before a change of reading cached (``CACHE_FORMAT``) are not served after it."""
    cached_dataset(items, _transform(), "disk", tmp_path / "cache", SETTINGS)[0]
    monkeypatch.setattr(cache_module, "CACHE_FORMAT", cache_module.CACHE_FORMAT + 1)
    cached_dataset(items, _transform(), "disk", tmp_path / "cache", SETTINGS)[0]
    assert len(list((tmp_path / "cache").iterdir())) == 2


def test_the_dtype_spelling_names_one_disk_cache(items, tmp_path) -> None:
    """``"float16"`` in a config and ``torch.float16`` from an expression are one cache, as before the configs said
    ``"$torch.float16"``."""
    for dtype in ("float16", torch.float16):
        cached_dataset(items, _transform(), "disk", tmp_path / "cache", SETTINGS, cached_dtype=dtype)[0]
    assert len(list((tmp_path / "cache").iterdir())) == 1


# cache_on_device, cache kind, extra augmentation, colour augmentation -> the pipeline's order
TRAINING_ORDERS = [
    (False, "memory", True, False, ["load", "resize", "cast", "after", "flip", "noise"]),
    (True, "memory", True, False, ["load", "resize", "cast", "device", "after", "flip", "noise"]),
    (True, "disk", "true", False, ["load", "resize", "cast", "after", "flip", "noise"]),
    (False, "memory", "false", False, ["load", "resize", "cast", "after", "flip"]),
    (False, "memory", True, True, ["load", "resize", "cast", "after", "flip", "colour", "noise"]),
    (False, "memory", False, True, ["load", "resize", "cast", "after", "flip", "colour"]),
]


@pytest.mark.parametrize("on_device, cache, extra, colour, expected", TRAINING_ORDERS)
def test_training_transforms_in_cache_order(on_device, cache, extra, colour, expected) -> None:
    from monai.transforms import Lambdad

    named = {name: Lambdad(keys="x", func=lambda v: v) for name in ("load", "resize", "cast", "device", "after")}
    named |= {name: Lambdad(keys="x", func=lambda v: v) for name in ("flip", "noise", "colour")}
    compose = training_transforms(
        prepare=[named["load"]],
        resize=named["resize"],
        cache_types=named["cast"],
        after_cache=named["after"],
        augmentation=[named["flip"]],
        extra_augmentation=[named["noise"]],
        use_extra_augmentation=extra,
        colour_augmentation=[named["colour"]],
        use_colour_augmentation=colour,
        to_device=named["device"],
        cache_on_device=on_device,
        cache=cache,
    )
    names = {id(t): n for n, t in named.items()}
    assert [names[id(t)] for t in compose.transforms] == expected
