"""NIfTI slices through MONAI's ``NibabelReader``, turned into the package's (row, column) display order.

A NIfTI array is indexed (i, j, k) along the axes its affine names. To show it like the DICOM slices of the same scan
(radiological convention: patient left on the right of the screen, anterior at the top), the volume is reoriented to
LPS (i: right to left, j: anterior to posterior, k: inferior to superior) and each slice is transposed so that rows
follow j and columns follow i. A 2D image written by ITK/SimpleITK from a (H, W) numpy array (identity direction,
i.e. LPS) therefore loads back as the same (H, W) array.
"""

from __future__ import annotations

import os
from typing import Any

import nibabel as nib
import numpy as np
from monai.data import NibabelReader
from monai.utils import MetaKeys

from pipeline.io.readers import SliceReadError, check_pixel_count

__all__ = ["load_nifti_slice"]

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
