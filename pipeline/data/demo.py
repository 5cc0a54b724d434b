"""Embedded demo dataset: synthetic chest-CT-like axial slices with lung masks.

The generator imitates the layout and intensity statistics of the Kaggle "Finding and Measuring Lungs in CT Data"
slices (512 x 512 int16 TIFF in Hounsfield units, uint8 {0, 1} LZW masks, ``pairs.csv`` with ``filename,split``) so
that a freshly cloned repository can train and evaluate a bundle without downloading anything. The images are
synthetic phantoms and are not suitable for any clinical purpose.

Each slice is a seeded random phantom: body outline with a subcutaneous fat layer, rib cage, sternum, spine and
scapulae, mediastinum with heart, aorta, trachea and oesophagus, diaphragm dome and stomach near the lung base, and
two asymmetric lungs with a density gradient, vessels and hilar bronchi. CT noise is obtained by filtered
back-projection (``skimage.transform.iradon``) of Poisson-like projection noise whose variance follows the
phantom's line integrals, so it shows the streaks of a real reconstruction, at half resolution to keep it cheap.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image
from scipy import ndimage
from skimage import draw, filters, transform

from pipeline.data.generated import GeneratedFolder

__all__ = ["ensure_demo_dataset", "is_complete_demo_dataset", "synthesize_ct_slice", "write_demo_dataset"]

logger = logging.getLogger(__name__)

#: Written last into a finished dataset folder; also records the generation parameters.
MARKER_NAME = "demo_dataset.json"
#: Bumped whenever the generator's output changes, so that datasets made by an older version are regenerated.
GENERATOR_VERSION = 2
_FOLDER = GeneratedFolder(MARKER_NAME, __name__, GENERATOR_VERSION, "demo dataset")

_AIR_HU = -1000.0
_FAT_HU = -100.0
_SOFT_HU = 40.0
_NOISE_RES = 128  # resolution of the filtered back-projection that produces the noise texture
_PROJ_RES = 64  # resolution of the forward projection that only sets the (smooth) noise variance per ray
_NOISE_ANGLES = 90


def _ellipse(
    u: np.ndarray, v: np.ndarray, cx: float, cy: float, a: float, b: float, angle: float = 0.0, power: float = 2.0
) -> np.ndarray:
    """Approximate signed distance (negative inside) to a rotated (super-)ellipse on normalised coordinates."""
    cos, sin = np.cos(angle), np.sin(angle)
    x, y = u - cx, v - cy
    xr, yr = (x * cos + y * sin) / a, (y * cos - x * sin) / b
    if power == 2.0:  # the common case, several times cheaper than a general power
        return (np.hypot(xr, yr) - 1.0) * min(a, b)
    radius = (np.abs(xr) ** power + np.abs(yr) ** power) ** (1.0 / power)
    return (radius - 1.0) * min(a, b)


def _upsample_rows(a: np.ndarray, n_out: int) -> np.ndarray:
    """Linear interpolation of ``a`` along axis 0 to ``n_out`` rows, end points aligned (``ndimage.zoom(order=1)``).

    Plain element-wise arithmetic rather than a matrix product, so the result does not depend on BLAS threading.
    """
    n_in = a.shape[0]
    pos = np.arange(n_out) * ((n_in - 1) / (n_out - 1))
    lo = np.minimum(pos.astype(int), n_in - 2)
    frac = (pos - lo)[:, None]
    return a[lo] * (1.0 - frac) + a[lo + 1] * frac


def _smooth_field(rng: np.random.Generator, size: int, sigma: float = 2.0, coarse: int = 24) -> np.ndarray:
    """Unit-variance smooth random field of shape ``(size, size)``, correlated over ``size / coarse * sigma``."""
    field = filters.gaussian(rng.standard_normal((coarse, coarse)), sigma=sigma, mode="wrap")
    field = _upsample_rows(_upsample_rows(field, size).T, size).T  # separable bilinear, cheaper than ndimage.zoom
    return (field - field.mean()) / (field.std() + 1e-8)


def _paint_ellipse(img: np.ndarray, row: float, col: float, r_rad: float, c_rad: float, rot: float, value: float):
    rr, cc = draw.ellipse(row, col, max(r_rad, 0.5), max(c_rad, 0.5), shape=img.shape, rotation=rot)
    img[rr, cc] = value


def _vessel_points(rng: np.random.Generator, size: int, start: tuple[float, float], direction: float) -> np.ndarray:
    """Centre lines of branching vessels growing from a hilum, as rows of ``(row, col, radius)`` in pixels."""
    px = size / 256.0
    points = []
    stack = [
        (*start, direction + rng.uniform(-1.2, 1.2), rng.uniform(1.0, 2.2) * px, 0) for _ in range(rng.integers(3, 7))
    ]
    while stack and len(points) < 400:
        row, col, ang, rad, depth = stack.pop()
        for _ in range(int(rng.integers(12, 35))):
            points.append((row, col, rad))
            ang += rng.normal(0.0, 0.2)
            row, col = row + 1.5 * px * np.sin(ang), col + 1.5 * px * np.cos(ang)
            rad *= 0.97
            if depth < 3 and rng.random() < 0.1:
                stack.append((row, col, ang + rng.choice([-1, 1]) * rng.uniform(0.4, 0.9), rad * 0.8, depth + 1))
            if rad < 0.5 * px:
                break
    return np.asarray(points, dtype=np.float64).reshape(-1, 3)


def _render_disks(size: int, points: np.ndarray) -> np.ndarray:
    """Union of disks ``(row, col, radius)``: centres binned by radius, then one dilation per radius bin."""
    out = np.zeros((size, size), dtype=bool)
    if points.size == 0:
        return out
    rows = np.clip(np.rint(points[:, 0]).astype(int), 0, size - 1)
    cols = np.clip(np.rint(points[:, 1]).astype(int), 0, size - 1)
    bins = np.clip(np.rint(points[:, 2] * 2.0).astype(int), 1, 12)  # half-pixel radius steps
    for b in np.unique(bins):
        seeds = np.zeros((size, size), dtype=bool)
        seeds[rows[bins == b], cols[bins == b]] = True
        r = b / 2.0
        k = int(np.ceil(r))
        yy, xx = np.mgrid[-k : k + 1, -k : k + 1]
        out |= ndimage.binary_dilation(seeds, structure=(yy**2 + xx**2) <= r * r + 0.25)
    return out


def _fbp_noise(rng: np.random.Generator, hu: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """Reconstruction noise texture of unit standard deviation inside the scan circle, at ``hu``'s resolution.

    Projections of the phantom give line integrals ``p``; quantum noise on a log-transformed projection has a
    standard deviation proportional to ``exp(p / 2)``, so rays through shoulders, spine and long body diameters are
    noisier and filtered back-projection turns that into the characteristic streaky noise of CT.
    """
    size = hu.shape[0]
    low = transform.resize(hu, (_PROJ_RES, _PROJ_RES), order=1, anti_aliasing=True, preserve_range=True)
    circle = _ellipse(*_grid(_PROJ_RES), 0.0, 0.0, 0.97, 0.97) < 0
    mu = np.clip(low + 1000.0, 0.0, None) / 1000.0 * circle  # in units of water attenuation
    theta = np.linspace(0.0, 180.0, _NOISE_ANGLES, endpoint=False)
    line_integral = transform.radon(mu, theta=theta, circle=True) * (0.19 * 40.0 / _PROJ_RES)  # 0.19/cm, 40 cm FOV
    # The variance only needs the smooth line integrals: project at low resolution, resample to the detector.
    line_integral = _upsample_rows(line_integral, _NOISE_RES)
    sino_noise = rng.standard_normal(line_integral.shape) * np.exp(np.clip(line_integral, 0.0, 12.0) / 2.0)
    noise = transform.iradon(sino_noise, theta=theta, circle=True, filter_name="shepp-logan")
    noise = transform.resize(noise, (size, size), order=1, preserve_range=True)
    return noise / (noise[inside].std() + 1e-8)


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Normalised ``(u, v)`` coordinates in [-1, 1]: ``u`` to the image right, ``v`` down (posterior)."""
    axis = (np.arange(size, dtype=np.float64) + 0.5) / size * 2.0 - 1.0
    v, u = np.meshgrid(axis, axis, indexing="ij")
    return u, v


def _smoothstep(x: float) -> float:
    x = min(max(x, 0.0), 1.0)
    return x * x * (3.0 - 2.0 * x)


def synthesize_ct_slice(rng: np.random.Generator, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Synthesise one chest-CT-like axial slice in Hounsfield units and its lung mask.

    The patient lies supine (anterior at the top, patient's right on the image left). A random cranio-caudal level
    decides the anatomy: small apical lungs with clavicles and scapulae, mid-chest lungs around the heart, or basal
    crescents over the diaphragm dome with the stomach. Vessels inside the lungs belong to the mask, the trachea,
    main bronchi, stomach gas and the air around the body do not.

    Args:
        rng: random generator; the same generator state gives byte-identical outputs.
        size: output height and width in pixels. Defaults to 256.

    Returns:
        ``(image, mask)``: ``image`` is an int16 array of shape ``(size, size)`` in HU (soft tissue about 40; a
        random scanner gain, as in the reference scans, puts air between about -1030 and -810 and aerated lung
        between about -880 and -650; three slices in four have padding of about -1800 to -2500 outside the scan
        circle), ``mask`` a uint8 array of the same shape with values {0, 1}.

    Raises:
        ValueError: when ``size`` is smaller than 64.
    """
    if size < 64:
        raise ValueError(f"size must be at least 64, got {size}")
    u, v = _grid(size)
    px = 2.0 / size  # one pixel in normalised units

    def to_px(x: float, y: float) -> tuple[float, float]:
        return (y + 1.0) / px, (x + 1.0) / px

    level = float(rng.beta(1.6, 1.6))  # 0: lung apex, 1: lung base
    apex = 1.0 - _smoothstep(level / 0.35)
    base = _smoothstep((level - 0.65) / 0.35)
    padded = rng.random() < 0.75
    zoom = rng.uniform(0.9, 1.0) if padded else rng.uniform(1.0, 1.1)

    # Body, chest wall and thoracic cavity.
    bx, by = rng.uniform(-0.03, 0.03), rng.uniform(-0.05, 0.02)
    ba, bb = zoom * rng.uniform(0.86, 0.97), zoom * rng.uniform(0.62, 0.74)
    body_angle = rng.normal(0.0, 0.03)
    wobble = _smooth_field(rng, size, sigma=2.5)
    f_body = _ellipse(u, v, bx, by, ba, bb, body_angle, power=rng.uniform(2.2, 2.8)) + 0.01 * wobble
    f_body = np.maximum(f_body, (v - by) - 0.95 * bb)  # the back lies flat on the couch
    fat = zoom * rng.uniform(0.015, 0.06)
    wall = zoom * rng.uniform(0.035, 0.06)
    back = zoom * rng.uniform(0.05, 0.08)  # paraspinal muscles
    ca, cb = ba - fat - wall, bb - fat - wall - back / 2
    cx, cy = bx, by - back / 2
    f_cavity = _ellipse(u, v, cx, cy, ca, cb, body_angle, power=2.1) + 0.008 * wobble

    # Mediastinum: midline strip, spine, descending aorta, heart below the great vessels.
    mid_x = cx + rng.normal(0.0, 0.015)
    spine_r = zoom * rng.uniform(0.07, 0.09)
    spine_y = cy + cb - 0.2 * spine_r
    aorta_r = zoom * rng.uniform(0.04, 0.06)
    aorta = (mid_x + spine_r + 0.5 * aorta_r, spine_y - spine_r - 0.1 * aorta_r)
    half_med = zoom * rng.uniform(0.04, 0.07) * (1.0 + 0.8 * apex)
    organs = [(_ellipse(u, v, *aorta, aorta_r, aorta_r), 1.3 * aorta_r)]  # (signed distance, lung clearance)
    heart_scale = _smoothstep((level - 0.2) / 0.3) * (1.0 - 0.3 * base)
    if heart_scale > 0.05:
        hx, hy = mid_x + ca * rng.uniform(0.06, 0.16), cy - cb * rng.uniform(0.0, 0.2)
        ha, hb = ca * rng.uniform(0.36, 0.48) * heart_scale, cb * rng.uniform(0.48, 0.6) * heart_scale
        angle = rng.uniform(-0.7, -0.2)
        f_heart = np.minimum(
            _ellipse(u, v, hx, hy, ha, hb, angle),
            _ellipse(u, v, hx - 0.45 * ha, hy + 0.3 * hb, 0.6 * ha, 0.55 * hb, angle + rng.uniform(-0.3, 0.3)),
        )
        organs.append((f_heart + 0.01 * _smooth_field(rng, size, sigma=2.0), 0.02 * zoom))
    if level < 0.55:  # ascending aorta, pulmonary trunk, supra-aortic branches
        n_vessels = int(rng.integers(2, 5))
        for k in range(n_vessels):
            r = zoom * rng.uniform(0.025, 0.06 if level > 0.3 else 0.035)
            gx = mid_x + rng.uniform(-0.06, 0.1) * zoom
            gy = cy - cb * rng.uniform(0.0, 0.45) - 0.05 * k
            organs.append((_ellipse(u, v, gx, gy, r, r), 0.02 * zoom))
    f_med = np.abs(u - mid_x) - half_med
    f_med = np.minimum(f_med, _ellipse(u, v, mid_x, spine_y, spine_r * 1.5, spine_r * 1.4))
    for f_organ, clearance in organs:
        f_med = np.minimum(f_med, f_organ - clearance)

    lungs = np.zeros((size, size), dtype=bool)
    side_masks, domes = [], []
    for side in (-1.0, 1.0):  # -1: patient's right (image left), +1: patient's left
        scale = 1.0 - 0.62 * apex * rng.uniform(0.8, 1.1)
        la = ca * rng.uniform(0.5, 0.62) * scale
        lb = cb * rng.uniform(0.85, 1.1) * scale
        lx = mid_x + side * (ca - la * rng.uniform(0.9, 1.05))
        ly = cy + cb * (0.25 * apex + rng.uniform(-0.1, 0.1))
        f_lung = np.maximum(f_cavity, _ellipse(u, v, lx, ly, la, lb, rng.normal(0.0, 0.1), rng.uniform(1.8, 2.6)))
        f_lung = np.maximum(f_lung, -f_med)
        if base > 0:  # the diaphragm dome pushes the lung into a posterolateral crescent; the right one is higher
            dome_r = cb * base * rng.uniform(0.7, 1.0) * (1.15 if side < 0 else 0.95)
            dome = (mid_x + side * ca * rng.uniform(0.3, 0.45), cy - cb * rng.uniform(0.1, 0.35))
            f_dome = _ellipse(u, v, *dome, dome_r * ca / cb * 1.1, dome_r)
            domes.append((dome, dome_r, f_dome))
            f_lung = np.maximum(f_lung, -f_dome)
        f_lung = f_lung + 0.012 * _smooth_field(rng, size, sigma=2.5) + 0.005 * _smooth_field(rng, size, sigma=1.2)
        side_mask = f_lung < 0
        labels, n = ndimage.label(side_mask)
        if n > 1:  # keep the main part: a lung section is one connected region
            side_mask = labels == np.argmax(np.bincount(labels.ravel())[1:]) + 1
        side_masks.append(side_mask)
        lungs |= side_mask

    # Paint the anatomy in HU, from the outside in.
    hu = np.full((size, size), _AIR_HU)
    couch = by + bb + zoom * rng.uniform(0.04, 0.1) - 0.12 * u**2
    hu[(np.abs(v - couch) < 1.5 * px) & (np.abs(u) < 0.95)] = rng.uniform(150.0, 400.0)
    hu[(np.abs(v - couch - 0.045) < px) & (np.abs(u) < 0.9)] = rng.uniform(-300.0, 0.0)
    body = f_body < 0
    hu[body] = _FAT_HU + rng.uniform(-15.0, 15.0)
    hu[f_body < -fat] = _SOFT_HU + rng.uniform(-10.0, 15.0)
    cavity = f_cavity < 0
    hu[cavity & (f_med < 0)] = -90.0 + rng.uniform(-10.0, 20.0)  # mediastinal fat
    for f_organ, _ in organs:
        hu[cavity & (f_organ < 0)] = _SOFT_HU + rng.uniform(-5.0, 25.0)
    for dome, dome_r, f_dome in domes:
        hu[(f_dome < 0) & cavity] = _SOFT_HU + rng.uniform(5.0, 25.0)  # liver and spleen
        if dome[0] > mid_x and rng.random() < 0.5:  # gas in the stomach fundus
            gas = _ellipse(u, v, dome[0] + 0.02, dome[1] - 0.3 * dome_r, 0.4 * dome_r, 0.25 * dome_r) < 0
            hu[gas & (f_dome < -0.02) & (v < dome[1] - 0.2 * dome_r)] = _AIR_HU + 20.0

    # Lungs: denser towards the dependent (posterior) part, soft parenchymal texture, vessels from the hila and
    # vessel cross-sections; the vessels belong to the lung mask.
    lung_hu = (
        rng.uniform(-880.0, -820.0)
        + rng.uniform(10.0, 50.0) * (v - cy) / cb
        + 15.0 * _smooth_field(rng, size, sigma=1.0, coarse=48)
    )
    hu[lungs] = lung_hu[lungs]
    points, hila = [np.zeros((0, 3))], []
    for side, side_mask in zip((-1.0, 1.0), side_masks, strict=True):
        rows = np.flatnonzero(side_mask.any(axis=1))
        if rows.size:  # the hilum: the medial edge of the lung about halfway down
            row = int(rows[int(rng.uniform(0.35, 0.6) * rows.size)])
            cols = np.flatnonzero(side_mask[row])
            hilum = (float(row), float(cols[-1] - 2 if side < 0 else cols[0] + 2))
            points.append(_vessel_points(rng, size, hilum, 0.0 if side > 0 else np.pi))
            hila.append((side, hilum))
    rows, cols = np.nonzero(lungs)
    if rows.size:  # vessels seen end-on
        picks = rng.choice(rows.size, size=int(rng.integers(15, 50)))
        radii = rng.uniform(0.5, 1.3, picks.size) * size / 256
        points.append(np.stack([rows[picks], cols[picks], radii], axis=1))
    vessels = _render_disks(size, np.concatenate(points)) & lungs
    vessel_hu = rng.uniform(30.0, 150.0) + 40.0 * _smooth_field(rng, size, sigma=1.0, coarse=48)
    hu[vessels] = vessel_hu[vessels]

    # Airways: the trachea above the carina, main bronchi at the hila; none of them belong to the lung mask.
    airway = np.zeros((size, size), dtype=bool)
    airway_wall = np.zeros((size, size), dtype=bool)
    trachea_r = zoom * rng.uniform(0.035, 0.055)
    if level < 0.45:
        t_center = (mid_x + rng.normal(0.0, 0.01), spine_y - spine_r - trachea_r * rng.uniform(1.4, 2.2))
        airway |= _ellipse(u, v, *t_center, trachea_r, trachea_r * 0.9) < 0
        airway_wall |= _ellipse(u, v, *t_center, trachea_r + 1.8 * px, trachea_r * 0.9 + 1.8 * px) < 0
    elif level < 0.7:
        for side, (row, col) in hila:
            for _ in range(int(rng.integers(0, 3))):
                r = zoom * rng.uniform(0.012, 0.025)
                c = (col * px - 1.0 - side * r * rng.uniform(0.0, 1.5), row * px - 1.0 + rng.uniform(-0.06, 0.06))
                airway |= _ellipse(u, v, *c, r, r) < 0
                airway_wall |= _ellipse(u, v, *c, r + 1.5 * px, r + 1.5 * px) < 0
    hu[airway_wall] = _SOFT_HU
    hu[airway] = _AIR_HU + rng.uniform(0.0, 40.0)
    if rng.random() < 0.4:  # air in the oesophagus
        oesophagus = to_px(mid_x - 0.5 * aorta_r, spine_y - spine_r - 0.02)
        _paint_ellipse(hu, *oesophagus, 1.5 * size / 256, 2.5 * size / 256, 0.0, _AIR_HU + 50.0)
    lungs &= ~airway_wall

    # Bones: spine, ribs around the cavity, sternum, scapulae and clavicles at the apex.
    bones = np.zeros((size, size))
    cortex, marrow = rng.uniform(700.0, 1100.0), rng.uniform(150.0, 300.0)
    sr, sc = to_px(mid_x, spine_y)
    rad = spine_r / px
    _paint_ellipse(bones, sr, sc, rad, rad, 0.0, cortex)
    _paint_ellipse(bones, sr, sc, rad * 0.82, rad * 0.82, 0.0, marrow)
    for lam in (-1, 1):  # laminae and transverse processes
        _paint_ellipse(bones, sr + 1.25 * rad, sc + lam * 0.7 * rad, 0.3 * rad, 0.9 * rad, lam * 0.5, cortex * 0.8)
    _paint_ellipse(bones, sr + 2.0 * rad, sc, 0.7 * rad, 0.2 * rad, 0.0, cortex * 0.85)  # spinous process
    _paint_ellipse(bones, sr + 1.25 * rad, sc, 0.45 * rad, 0.45 * rad, 0.0, 0.0)  # spinal canal
    n_ribs = int(rng.integers(6, 12))
    for phi in np.concatenate([rng.uniform(-0.85, -0.1, n_ribs // 2), rng.uniform(0.1, 0.85, n_ribs - n_ribs // 2)]):
        phi = phi * np.pi + (np.pi if rng.random() < 0.5 else 0.0)  # anterior and posterior arcs
        x, y = cx + (ca + 0.4 * wall) * np.sin(phi), cy - (cb + 0.4 * wall) * np.cos(phi)
        tangent = np.arctan2((cb + wall) * np.sin(phi), (ca + wall) * np.cos(phi))
        length, thick = zoom * rng.uniform(0.025, 0.055) / px, zoom * rng.uniform(0.009, 0.014) / px
        _paint_ellipse(bones, *to_px(x, y), thick, length, tangent, cortex)
        _paint_ellipse(bones, *to_px(x, y), thick * 0.45, length * 0.8, tangent, marrow)
    if level > 0.15:
        sternum = to_px(mid_x, cy - cb - 0.5 * wall)
        _paint_ellipse(bones, *sternum, 0.012 * zoom / px, 0.04 * zoom / px, 0.0, cortex)
        _paint_ellipse(bones, *sternum, 0.006 * zoom / px, 0.03 * zoom / px, 0.0, marrow)
    if level < 0.55:
        for side in (-1.0, 1.0):
            sx, sy = cx + side * ca * rng.uniform(0.5, 0.75), cy + cb + wall * rng.uniform(0.3, 0.7)
            rot = side * rng.uniform(0.3, 0.6)
            _paint_ellipse(bones, *to_px(sx, sy), 0.01 / px, 0.15 * zoom / px, rot, cortex * 0.8)
    if level < 0.2:
        for side in (-1.0, 1.0):
            clavicle = to_px(cx + side * 0.3 * ca, cy - cb - 0.2 * wall)
            _paint_ellipse(bones, *clavicle, 0.02 / px, 0.05 / px, side * 0.3, cortex * 0.8)
    # Bone replaces the soft tissue below it but never the lungs or the airways.
    bone = (bones != 0.0) & body & ~lungs & ~airway
    hu[bone] = bones[bone]

    # Partial volume, reconstruction noise, scanner calibration, field of view.
    hu = filters.gaussian(hu, sigma=rng.uniform(0.6, 1.0) * size / 256, preserve_range=True)
    scan = _ellipse(u, v, 0.0, 0.0, 1.0, 1.0) < 0
    hu = hu + rng.uniform(40.0, 65.0) * _fbp_noise(rng, hu, scan)
    hu = hu + rng.uniform(25.0, 45.0) * rng.standard_normal((size, size))
    gain = rng.uniform(0.82, 1.0)  # the reference scans read air near -850 HU and water near 0
    hu = gain * (hu - _SOFT_HU) + _SOFT_HU - rng.uniform(0.0, 30.0)
    if padded:
        hu[~scan] = rng.uniform(-2500.0, -1800.0) + rng.uniform(30.0, 60.0) * rng.standard_normal(int((~scan).sum()))

    image = np.clip(np.rint(hu), -3024, 3071).astype(np.int16)
    mask = lungs.astype(np.uint8)
    return image, mask


def _case_rng(seed: int, index: int) -> np.random.Generator:
    """One independent stream per case, so case ``i`` is the same whatever ``num_cases`` is."""
    return np.random.default_rng([seed, 1, index])


def is_complete_demo_dataset(root: str | Path, **params: object) -> bool:
    """Whether ``root`` holds a finished demo dataset, generated with ``params`` when any are given.

    Args:
        root: dataset folder.
        params: generation parameters (``num_cases``, ``size``, ``val_fraction``, ``seed``) that must match.

    Returns:
        True when the completion marker exists, comes from this generator version, matches ``params`` and every
        file in ``pairs.csv`` exists.
    """
    root = Path(root)
    recorded = _FOLDER.matching_marker(root, params)
    if recorded is None:
        return False
    try:
        with open(root / "pairs.csv", newline="") as f:
            names = [row["filename"] for row in csv.DictReader(f)]
    except (OSError, ValueError, KeyError):
        return False
    return len(names) == recorded.get("num_cases") and all(
        (root / "images" / n).is_file() and (root / "masks" / n).is_file() for n in names
    )


def write_demo_dataset(
    root: str | Path,
    num_cases: int = 160,
    size: int = 256,
    val_fraction: float = 0.2,
    seed: int = 0,
) -> Path:
    """Write a synthetic lung CT dataset with the layout of the reference Kaggle lung set.

    Layout::

        root/images/case_0000.tif   int16 HU, uncompressed
        root/masks/case_0000.tif    uint8 {0, 1}, LZW
        root/pairs.csv              filename,split (train / val)
        root/demo_dataset.json      generation parameters, the marker of a finished demo dataset

    Everything is written into a temporary sibling folder that is renamed to ``root`` at the end, so an interrupted
    run never leaves a folder that looks complete. An existing ``root`` is replaced only if it is empty or a demo
    dataset written by this function (it carries ``demo_dataset.json``); anything else is left alone.

    Args:
        root: output folder.
        num_cases: number of slices. Defaults to 160.
        size: slice height and width in pixels. Defaults to 256.
        val_fraction: fraction of cases in the ``val`` split, rounded to the nearest case. Defaults to 0.2.
        seed: random seed; the same seed gives byte-identical files. Defaults to 0.

    Returns:
        ``root`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: for ``num_cases < 1``, ``size < 64`` or ``val_fraction`` outside [0, 1).
        FileExistsError: when ``root`` exists and holds something other than a demo dataset (checked before any
            work and again before the final rename).
    """
    if num_cases < 1:
        raise ValueError(f"num_cases must be at least 1, got {num_cases}")
    if size < 64:
        raise ValueError(f"size must be at least 64, got {size}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    root = Path(root)
    params = {"num_cases": num_cases, "size": size, "val_fraction": val_fraction, "seed": seed}
    with _FOLDER.build(root, params) as (tmp, _):
        (tmp / "images").mkdir()
        (tmp / "masks").mkdir()
        names = [f"case_{i:04d}.tif" for i in range(num_cases)]
        for i, name in enumerate(names):
            image, mask = synthesize_ct_slice(_case_rng(seed, i), size)
            tifffile.imwrite(tmp / "images" / name, image, photometric="minisblack")
            Image.fromarray(mask).save(tmp / "masks" / name, compression="tiff_lzw")
        n_val = round(num_cases * val_fraction)
        val = set(np.random.default_rng([seed, 0]).permutation(num_cases)[:n_val].tolist())
        with open(tmp / "pairs.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["filename", "split"])
            writer.writerows([name, "val" if i in val else "train"] for i, name in enumerate(names))
    return root


def ensure_demo_dataset(root: str | Path, **kwargs: object) -> Path:
    """Return ``root`` after generating the demo dataset there unless a complete one already exists.

    An existing dataset is reused only when the parameters recorded in its ``demo_dataset.json`` equal the requested
    ones, the defaults of :func:`write_demo_dataset` filling in what ``kwargs`` leaves out; otherwise it is
    regenerated. A folder that is not a demo dataset is never replaced.

    Args:
        root: dataset folder, e.g. ``datasets/demo_ct``.
        kwargs: forwarded to :func:`write_demo_dataset` (``num_cases``, ``size``, ``val_fraction``, ``seed``).

    Returns:
        ``root`` as a :class:`~pathlib.Path`.

    Raises:
        TypeError: for a keyword that :func:`write_demo_dataset` does not take.
        FileExistsError: when ``root`` exists and is neither empty nor a demo dataset.
    """
    return _FOLDER.ensure(root, write_demo_dataset, is_complete_demo_dataset, kwargs)
