"""3D NIfTI volumes as training data: one item per slice, split by volume, read slice by slice in display order."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from monai.data import NibabelReader

from pipeline.intake import expand_volumes, load_datalist, split_datalist, without_volumes
from pipeline.io import LoadSlice, load_nifti_volume, nifti_depth

# affines with the slice axis in each voxel axis, and flipped: the reader orients them all the same way
AFFINES = {
    "identity": np.eye(4),
    "ras": np.diag([-1.0, -1.0, 1.0, 1.0]),
    "slices_first": np.array([[0, 0, 1.0, 0], [0, 1.0, 0, 0], [1.0, 0, 0, 0], [0, 0, 0, 1.0]]),
}


def _volume(path: Path, affine: np.ndarray, depth: int = 5, seed: int = 0, labels: bool = False) -> Path:
    rng = np.random.default_rng(seed)
    shape = [8, 6, 6]
    axis = int(np.argmax(np.abs(affine[2, :3])))  # the voxel axis that points superior
    shape[axis] = depth
    data = rng.integers(0, 4, shape) if labels else rng.normal(size=shape)
    nib.save(nib.Nifti1Image(data.astype(np.uint8 if labels else np.float32), affine), path)
    return path


@pytest.mark.parametrize("orientation", list(AFFINES))
def test_a_volume_is_its_slices_and_goes_back_to_the_file_order(orientation, tmp_path):
    path = _volume(tmp_path / "v.nii.gz", AFFINES[orientation])
    volume = load_nifti_volume(path, NibabelReader(as_closest_canonical=False))
    assert volume.num_slices == nifti_depth(path) == 5
    for k in range(5):
        assert np.array_equal(LoadSlice()(path, slice_index=k)[0].numpy(), volume.array[k])
    back, affine, _ = volume.to_file_order(volume.array)
    assert np.array_equal(back, np.asarray(nib.load(path).dataobj)) and np.array_equal(affine, AFFINES[orientation])


def _dataset(tmp_path: Path, volumes: int = 4) -> Path:
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    items = []
    for v in range(volumes):
        _volume(tmp_path / "images" / f"p{v}.nii.gz", np.eye(4), depth=3 + v, seed=v)
        _volume(tmp_path / "labels" / f"p{v}.nii.gz", np.eye(4), depth=3 + v, seed=v, labels=True)
        items.append({"image": f"images/p{v}.nii.gz", "label": f"labels/p{v}.nii.gz"})
    datalist = {"labels": {"0": "background", "1": "a", "2": "b", "3": "c"}, "training": items}
    (tmp_path / "dataset.json").write_text(json.dumps(datalist))
    return tmp_path


def test_slices_follow_their_volume_into_one_split(tmp_path):
    datalist = load_datalist(_dataset(tmp_path))
    assert not without_volumes(datalist)
    splits = split_datalist(datalist, val_fraction=0.25, seed=1)
    volumes = {name: {i["volume"] for i in items} for name, items in splits.items()}
    assert volumes["train"].isdisjoint(volumes["val"]) and len(volumes["val"]) == 1
    assert sum(len(v) for v in splits.values()) == 3 + 4 + 5 + 6
    first = splits["val"][0]
    assert first["name"] == f"{first['volume']}_z000" and first["slice_index"] == 0


def test_2d_items_are_left_as_they_are(tmp_path):
    items = [{"image": str(tmp_path / "a.png"), "label": str(tmp_path / "b.png")}]
    assert expand_volumes(items) == items and without_volumes(items)


def test_a_label_volume_of_other_depth_is_refused(tmp_path):
    image = _volume(tmp_path / "i.nii.gz", np.eye(4), depth=4)
    label = _volume(tmp_path / "l.nii.gz", np.eye(4), depth=3, labels=True)
    with pytest.raises(ValueError, match="has 4 slices but its label volume"):
        expand_volumes([{"image": str(image), "label": str(label)}])
