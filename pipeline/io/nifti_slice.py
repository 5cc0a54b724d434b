"""NIfTI slices through MONAI's ``NibabelReader``, turned into the package's (row, column) display order.

A NIfTI array is indexed (i, j, k) along the axes its affine names. To show it like the DICOM slices of the same scan
(radiological convention: patient left on the right of the screen, anterior at the top), the volume is reoriented to
LPS (i: right to left, j: anterior to posterior, k: inferior to superior) and each slice is transposed so that rows
follow j and columns follow i. A 2D image written by ITK/SimpleITK from a (H, W) numpy array (identity direction,
i.e. LPS) therefore loads back as the same (H, W) array.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from monai.data import NibabelReader
from monai.utils import MetaKeys

from pipeline.io.readers import SliceReadError, check_pixel_count

__all__ = ["NiftiVolume", "load_nifti_slice", "load_nifti_volume", "nifti_depth"]

_LPS = nib.orientations.axcodes2ornt(("L", "P", "S"))


def load_nifti_slice(
    path: str | os.PathLike, reader: NibabelReader, slice_index: int | None = None, max_pixels: int | None = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """Read a 2D NIfTI image, or one axial slice of a 3D volume, in (row, column) display order.

    Args:
        path: ``.nii`` or ``.nii.gz`` file.
        reader: ``NibabelReader(as_closest_canonical=False)``.
        slice_index: slice of a 3D volume along its inferior-to-superior axis after reorientation to LPS
            (0 = most inferior). Required when the volume has more than one slice; ignored for 2D images.

    Returns:
        ``(array, meta)``: array (H, W), float as stored (scaling slope/intercept applied by nibabel); meta from
        ``NibabelReader`` with ``affine`` mapping (row, column, 0, 1) to RAS mm, ``spatial_shape`` (H, W) and
        ``original_channel_dim`` NaN.

    Raises:
        SliceReadError: unreadable file; more than 3 non-singleton dimensions; 3D volume without ``slice_index`` or
            with one out of range.
    """
    try:
        img = reader.read(path)
        shape = (*img.header.get_data_shape(), 1, 1)
    except Exception as e:  # nibabel raises ImageFileError, OSError, EOFError, zlib.error...
        raise SliceReadError(f"{path}: not a readable NIfTI file ({type(e).__name__}: {e})") from e
    check_pixel_count(path, int(shape[1]), int(shape[0]), max_pixels)  # one slice (rows along y), before decoding
    try:
        array, meta = reader.get_data(img)
    except Exception as e:  # nibabel raises ImageFileError, OSError, EOFError, zlib.error...
        raise SliceReadError(f"{path}: not a readable NIfTI file ({type(e).__name__}: {e})") from e
    array = np.asarray(array)
    while array.ndim > 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3:
        raise SliceReadError(f"{path}: NIfTI data has shape {array.shape}; expected a 2D image or a 3D volume")
    affine = np.asarray(meta[MetaKeys.ORIGINAL_AFFINE], dtype=np.float64)
    transform = nib.orientations.ornt_transform(nib.orientations.io_orientation(affine), _LPS)
    affine = affine @ nib.orientations.inv_ornt_aff(transform, array.shape)
    array = nib.orientations.apply_orientation(array, transform)
    depth = array.shape[2]
    if depth > 1 and slice_index is None:
        raise SliceReadError(f"{path}: 3D volume with {depth} slices; pass slice_index (0..{depth - 1})")
    k = 0 if depth == 1 else int(slice_index)  # type: ignore[arg-type]
    if not 0 <= k < depth:
        raise SliceReadError(f"{path}: slice_index {slice_index} out of range 0..{depth - 1}")
    # Display (row, column) = voxel (j, i): the affine's columns swap the same way, the slice fixes k.
    plane = np.ascontiguousarray(array[:, :, k].T)
    display_affine = np.eye(4)
    display_affine[:3, 0] = affine[:3, 1]
    display_affine[:3, 1] = affine[:3, 0]
    display_affine[:3, 2] = affine[:3, 2]
    display_affine[:3, 3] = affine[:3, 3] + k * affine[:3, 2]
    meta[MetaKeys.AFFINE] = display_affine
    meta[MetaKeys.SPATIAL_SHAPE] = np.asarray(plane.shape)
    meta[MetaKeys.ORIGINAL_CHANNEL_DIM] = float("nan")
    meta["slice_index"] = k
    return plane, meta


@dataclass
class NiftiVolume:
    """A 3D NIfTI volume as a stack of slices in the display order of :func:`load_nifti_slice`.

    Attributes:
        array: (N, H, W) float32, slice ``k`` as ``load_nifti_slice(path, slice_index=k)`` gives it (inferior to
            superior; rows anterior to posterior, columns right to left in LPS).
        spacing: (slice, row, column) spacing in mm, from the affine.
        path: the file.
    """

    array: np.ndarray
    spacing: tuple[float, float, float]
    path: Path

    @property
    def num_slices(self) -> int:
        return int(self.array.shape[0])

    def to_file_order(self, stack: np.ndarray) -> tuple[np.ndarray, np.ndarray, nib.Nifti1Header]:
        """``stack`` (N, H, W), in this volume's display order, back in the file's voxel order.

        Returns:
            ``(array, affine, header)``: the array indexed as the file's voxels, the file's affine and a copy of its
            header, so that a label volume written with them lies on the input in any viewer.
        """
        image = nib.load(os.fspath(self.path))
        affine = np.asarray(image.affine, dtype=np.float64)
        shape = tuple(int(s) for s in image.shape[:3])
        lps = np.ascontiguousarray(np.transpose(np.asarray(stack), (2, 1, 0)))  # (i, j, k) in LPS
        back = nib.orientations.ornt_transform(_LPS, nib.orientations.io_orientation(affine))
        array = nib.orientations.apply_orientation(lps, back)
        if array.shape != shape:  # pragma: no cover - the forward transform made the stack from this shape
            raise ValueError(f"{self.path.name}: a stack of {stack.shape} does not fit a volume of shape {shape}")
        return array, affine, image.header.copy()


def load_nifti_volume(path: str | os.PathLike, reader: NibabelReader, max_pixels: int | None = None) -> NiftiVolume:
    """Every axial slice of a 3D NIfTI volume, in display order (:func:`load_nifti_slice`'s), with its spacing.

    Raises:
        SliceReadError: unreadable file, not a 3D volume, or too large slices.
    """
    first, _ = load_nifti_slice(path, reader, slice_index=0, max_pixels=max_pixels)
    image = nib.load(os.fspath(path))
    affine = np.asarray(image.affine, dtype=np.float64)
    data = np.asarray(image.dataobj, dtype=np.float32)
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise SliceReadError(f"{path}: NIfTI data has shape {data.shape}; expected a 3D volume")
    transform = nib.orientations.ornt_transform(nib.orientations.io_orientation(affine), _LPS)
    oriented_affine = affine @ nib.orientations.inv_ornt_aff(transform, data.shape)
    lps = nib.orientations.apply_orientation(data, transform)
    stack = np.ascontiguousarray(np.transpose(lps, (2, 1, 0)), dtype=np.float32)  # (k, j, i): slices of (row, col)
    if stack.shape[1:] != first.shape:  # pragma: no cover - the same orientation as load_nifti_slice
        raise SliceReadError(f"{path}: slices of {stack.shape[1:]} do not match {first.shape}")
    sizes = np.linalg.norm(oriented_affine[:3, :3], axis=0)  # i, j, k
    return NiftiVolume(stack, (float(sizes[2]), float(sizes[1]), float(sizes[0])), Path(path))


def nifti_depth(path: str | os.PathLike) -> int:
    """The number of axial slices of a NIfTI file (along the axis its affine points inferior-superior), from its
    header; 1 for a 2D image.

    Raises:
        ValueError: naming the file, when it cannot be read as NIfTI.
    """
    try:
        image = nib.load(os.fspath(path))
        shape = tuple(image.header.get_data_shape())
        axes = nib.orientations.io_orientation(image.affine)
    except Exception as e:  # nibabel raises ImageFileError, OSError, EOFError...
        raise ValueError(f"{path}: not a readable NIfTI file ({type(e).__name__}: {e})") from e
    if len(shape) < 3:
        return 1
    superior = [axis for axis, (target, _) in enumerate(axes[:3]) if int(target) == 2]
    return int(shape[superior[0]]) if superior else int(shape[2])
