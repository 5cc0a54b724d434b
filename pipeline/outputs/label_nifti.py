"""Label masks as NIfTI files that line up with the source DICOM series in any viewer.

The mask arrives in the series' (N, H, W) = (slice, row, column) order with a 4x4 ``affine`` mapping the index
(column i, row j, slice k, 1) to DICOM patient coordinates (LPS, mm). NIfTI stores data indexed (i, j, k) and maps
it to RAS, so the data is ``mask.transpose(2, 1, 0)`` and the NIfTI affine is ``diag(-1, -1, 1, 1) @ affine``
(LPS -> RAS flips x and y). Both sform and qform are set with code 1 (scanner anatomical coordinates).
"""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np

from pipeline.atomic import atomic_output

__all__ = ["LPS_TO_RAS", "write_label_nifti"]

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
_SCANNER = 1  # NIFTI_XFORM_SCANNER_ANAT


def write_label_nifti(mask: np.ndarray, affine: np.ndarray, path: str | os.PathLike) -> Path:
    """Write an (N, H, W) mask as a uint8 NIfTI label image, atomically.

    Args:
        mask: (N, H, W) mask in (slice, row, column) order; values are stored as uint8 (0/1, or label numbers up
            to 255).
        affine: 4x4 mapping (column, row, slice, 1) to DICOM patient LPS mm (``SeriesVolume.affine``).
        path: destination, ``.nii`` or ``.nii.gz``.

    Returns:
        ``path`` as a ``Path``.

    Raises:
        ValueError: ``mask`` not 3D or holding values outside 0..255; ``affine`` not a finite invertible 4x4; a file
            name that is not ``.nii``/``.nii.gz``.
    """
    path = Path(path)
    if not path.name.endswith((".nii", ".nii.gz")):
        raise ValueError(f"{path.name}: a NIfTI file name must end in .nii or .nii.gz")
    mask = np.asarray(mask)
    if mask.ndim != 3:
        raise ValueError(f"mask must be (N, H, W), got shape {mask.shape}")
    if mask.size and (mask.min() < 0 or mask.max() > 255):
        raise ValueError(f"mask values must lie in 0..255 for uint8 labels, got {mask.min()}..{mask.max()}")
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.isfinite(affine).all() or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise ValueError(f"affine must be a finite invertible 4x4 matrix, got {affine.tolist()}")
    # The (N, H, W) C-order mask transposed is (i, j, k) in Fortran order, the order NIfTI stores: nibabel writes
    # it as it lies. A C-contiguous copy here would be transposed back by nibabel, 100 ms per 30 slices of 512 x 512.
    data = mask.astype(np.uint8, copy=False).transpose(2, 1, 0)
    ras = LPS_TO_RAS @ affine
    image = nib.Nifti1Image(data, ras)
    image.set_sform(ras, code=_SCANNER)
    image.set_qform(ras, code=_SCANNER)
    image.header.set_xyzt_units("mm")
    image.header.set_intent("label")
    image.header["descrip"] = b"label mask, not for clinical use"
    with atomic_output(path) as tmp:
        nib.save(image, tmp)
    return path
