"""The synthetic chest phantom behind both demos: one patient's anatomy, its axial sections, and a CT scan of them.

A :class:`ChestAnatomy` is one random patient, drawn once: body and chest-wall shape, mediastinum, heart in its
pericardial fat and great vessels, two asymmetric lungs, diaphragm domes, bones and tissue densities.
:meth:`ChestAnatomy.section` cuts it at a cranio-caudal level (0: lung apex, 1: lung base; the lungs end a little
beyond both), adding what differs from slice to slice (vessels, bronchi, ribs, parenchymal texture), and returns the
noise-free section in Hounsfield units with its label map: right lung, left lung and heart (:data:`LABELS`).
:func:`scan` turns a section into a reconstructed image: partial volume, a reconstruction kernel from smooth
(``sharpness`` 0, like Siemens B40f) to sharp (1, like B70f) that shapes both edges and the streaky noise of filtered
back-projection, and the scanner's calibration.

The 2D demo dataset (:mod:`pipeline.demo.slices`) draws one patient per slice at a random level with a random kernel;
the demo DICOM study (:mod:`pipeline.demo.study`) cuts one patient at consecutive levels and scans it with the
two kernels of a real two-series study. So the model trained on the demo slices has seen the study's anatomy and
both of its textures. The images are synthetic and not suitable for any clinical purpose.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage import draw, filters, transform

__all__ = ["AIR_HU", "HEART", "LABELS", "LEFT_LUNG", "RIGHT_LUNG", "ChestAnatomy", "LungSide", "scan", "scan_circle"]

AIR_HU = -1000.0
_FAT_HU = -100.0
_SOFT_HU = 40.0
_NOISE_RES = 128  # resolution of the filtered back-projection that produces the noise texture
_PROJ_RES = 64  # resolution of the forward projection that only sets the (smooth) noise variance per ray
_NOISE_ANGLES = 90
_LUNG_END = 0.12  # the lungs shrink to nothing this far above level 0 and below level 1
_PERICARDIAL_FAT = 0.035  # fat around the heart (normalised units at zoom 1, about 6 mm): its border shows all round

RIGHT_LUNG, LEFT_LUNG, HEART = 1, 2, 3
#: The values of the label map that :meth:`ChestAnatomy.section` returns, as a decathlon-style ``labels`` map. Sides
#: are the patient's: the right lung lies on the image's left.
LABELS: dict[int, str] = {0: "background", RIGHT_LUNG: "right lung", LEFT_LUNG: "left lung", HEART: "heart"}


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


def _ellipse_pixels(
    shape: tuple[int, ...], row: float, col: float, r_rad: float, c_rad: float, rot: float
) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of a filled ellipse, at least one pixel across."""
    return draw.ellipse(row, col, max(r_rad, 0.5), max(c_rad, 0.5), shape=shape, rotation=rot)


def _paint_ellipse(img: np.ndarray, row: float, col: float, r_rad: float, c_rad: float, rot: float, value: float):
    img[_ellipse_pixels(img.shape, row, col, r_rad, c_rad, rot)] = value


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


def scan_circle(size: int) -> np.ndarray:
    """Boolean ``(size, size)`` mask of the reconstructed field of view, the disc inscribed in the image."""
    return _ellipse(*_grid(size), 0.0, 0.0, 1.0, 1.0) < 0


def _smoothstep(x: float) -> float:
    x = min(max(x, 0.0), 1.0)
    return x * x * (3.0 - 2.0 * x)


@dataclass(frozen=True)
class LungSide:
    """Shape factors of one lung, relative to the thoracic cavity."""

    apex_shrink: float  # how much smaller the lung is at the apex
    width: float  # half-width as a fraction of the cavity's
    height: float  # half-height as a fraction of the cavity's
    lateral: float  # distance of the centre from the midline, in lung half-widths from the cavity edge
    shift: float  # antero-posterior shift of the centre, in cavity half-heights
    angle: float
    power: float  # super-ellipse exponent: rounder (2) or boxier
    dome_radius: float  # the diaphragm dome's size at the base, in cavity half-heights
    dome_x: float  # the dome's centre, from the midline, in cavity half-widths
    dome_y: float  # the dome's centre, anterior of the cavity centre, in cavity half-heights


@dataclass(frozen=True)
class ChestAnatomy:
    """One synthetic patient; every field is in normalised image units ([-1, 1] across the field of view) or HU.

    Build one with :meth:`draw` and cut it with :meth:`section`. The patient lies supine: anterior at the top of the
    image, the patient's right on the image left.
    """

    zoom: float  # patient size relative to the field of view
    body: tuple[float, float, float, float, float, float]  # centre x, y, half-axes a, b, angle, super-ellipse power
    fat: float  # subcutaneous fat thickness
    wall: float  # chest-wall muscle thickness
    back: float  # paraspinal muscle thickness
    mid_x: float  # the mediastinum's offset from the cavity centre
    spine_r: float
    aorta_r: float
    mediastinum: float  # half-width of the mediastinal strip
    heart: tuple[float, float, float, float, float, float]  # x, y offsets, half-axes (cavity fractions), angles
    great_vessels: tuple[tuple[float, float, float], ...]  # (radius fraction, x offset, y offset)
    lungs: tuple[LungSide, LungSide]  # patient's right (image left), then left
    stomach_gas: bool
    oesophagus_air: bool
    trachea: tuple[float, float, float]  # radius, lateral offset, distance in front of the spine (radii)
    scapulae: tuple[tuple[float, float, float], tuple[float, float, float]]  # (x, y, rotation) factors per side
    couch: tuple[float, float, float]  # distance below the back, HU of the couch and of its mattress
    tissue_hu: tuple[float, float, float, float, float]  # fat, muscle, mediastinal fat, organs, liver/spleen
    lung_hu: tuple[float, float]  # aerated lung, antero-posterior gradient
    vessel_hu: float
    bone_hu: tuple[float, float]  # cortex, marrow

    @classmethod
    def draw(cls, rng: np.random.Generator, zoom: float = 1.0) -> ChestAnatomy:
        """Draw one patient.

        Args:
            rng: random generator; the same state gives the same patient.
            zoom: patient size relative to the field of view (about 0.9 to 1.1). Defaults to 1.0.

        Returns:
            the patient's anatomy.
        """
        body = (
            rng.uniform(-0.03, 0.03),
            rng.uniform(-0.05, 0.02),
            zoom * rng.uniform(0.86, 0.97),
            zoom * rng.uniform(0.62, 0.74),
            rng.normal(0.0, 0.03),
            rng.uniform(2.2, 2.8),
        )
        heart = (
            rng.uniform(0.06, 0.16),
            rng.uniform(0.0, 0.2),
            rng.uniform(0.36, 0.48),
            rng.uniform(0.48, 0.6),
            rng.uniform(-0.7, -0.2),
            rng.uniform(-0.3, 0.3),
        )
        vessels = tuple(
            (rng.uniform(0.0, 1.0), rng.uniform(-0.06, 0.1), rng.uniform(0.0, 0.45))
            for _ in range(int(rng.integers(2, 5)))
        )
        lungs = tuple(
            LungSide(
                apex_shrink=rng.uniform(0.8, 1.1),
                width=rng.uniform(0.5, 0.62),
                height=rng.uniform(0.85, 1.1),
                lateral=rng.uniform(0.9, 1.05),
                shift=rng.uniform(-0.1, 0.1),
                angle=rng.normal(0.0, 0.1),
                power=rng.uniform(1.8, 2.6),
                dome_radius=rng.uniform(0.7, 1.0),
                dome_x=rng.uniform(0.3, 0.45),
                dome_y=rng.uniform(0.1, 0.35),
            )
            for _ in range(2)
        )
        return cls(
            zoom=zoom,
            body=body,
            fat=zoom * rng.uniform(0.015, 0.06),
            wall=zoom * rng.uniform(0.035, 0.06),
            back=zoom * rng.uniform(0.05, 0.08),
            mid_x=rng.normal(0.0, 0.015),
            spine_r=zoom * rng.uniform(0.07, 0.09),
            aorta_r=zoom * rng.uniform(0.04, 0.06),
            mediastinum=zoom * rng.uniform(0.04, 0.07),
            heart=heart,
            great_vessels=vessels,
            lungs=(lungs[0], lungs[1]),
            stomach_gas=bool(rng.random() < 0.5),
            oesophagus_air=bool(rng.random() < 0.4),
            trachea=(zoom * rng.uniform(0.035, 0.055), rng.normal(0.0, 0.01), rng.uniform(1.4, 2.2)),
            scapulae=tuple((rng.uniform(0.5, 0.75), rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.6)) for _ in range(2)),  # type: ignore[arg-type]
            couch=(zoom * rng.uniform(0.04, 0.1), rng.uniform(150.0, 400.0), rng.uniform(-300.0, 0.0)),
            tissue_hu=(
                _FAT_HU + rng.uniform(-15.0, 15.0),
                _SOFT_HU + rng.uniform(-10.0, 15.0),
                -90.0 + rng.uniform(-10.0, 20.0),
                _SOFT_HU + rng.uniform(-5.0, 25.0),
                _SOFT_HU + rng.uniform(5.0, 25.0),
            ),
            lung_hu=(rng.uniform(-880.0, -820.0), rng.uniform(10.0, 50.0)),
            vessel_hu=rng.uniform(30.0, 150.0),
            bone_hu=(rng.uniform(700.0, 1100.0), rng.uniform(150.0, 300.0)),
        )

    def section(self, level: float, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """The noise-free axial section at a cranio-caudal level, and its label map of the lungs and the heart.

        Small apical lungs with clavicles and scapulae near level 0, mid-chest lungs around the heart, basal
        crescents over the diaphragm domes with the stomach near 1. Beyond both ends the lungs shrink to nothing
        within 0.12. The heart appears below the great vessels from about level 0.25 and ends on the diaphragm above
        the lung bases (about 0.95); a layer of pericardial fat sets it apart from the great vessels, the liver and the
        chest wall, as the mediastinal fat does from the lungs.

        The label map (:data:`LABELS`) holds the patient's right lung (1, on the image's left), the left lung (2) and
        the heart (3). Vessels inside the lungs belong to the lungs; the trachea, main bronchi, stomach gas and the air
        around the body belong to no structure, nor do the great vessels and the pericardial fat.

        Args:
            level: 0 at the lung apex, 1 at the lung base.
            size: height and width in pixels, at least 64.
            rng: random generator for what differs from slice to slice (vessels, bronchi, ribs, texture).

        Returns:
            ``(hu, labels)``: float64 HU and a uint8 label map with values in :data:`LABELS`, both ``(size, size)``.

        Raises:
            ValueError: when ``size`` is smaller than 64.
        """
        if size < 64:
            raise ValueError(f"size must be at least 64, got {size}")
        u, v = _grid(size)
        px = 2.0 / size  # one pixel in normalised units

        def to_px(x: float, y: float) -> tuple[float, float]:
            return (y + 1.0) / px, (x + 1.0) / px

        apex = 1.0 - _smoothstep(level / 0.35)
        base = _smoothstep((level - 0.65) / 0.35)
        extent = _smoothstep((level + _LUNG_END) / _LUNG_END) * (1.0 - _smoothstep((level - 1.0) / _LUNG_END))
        zoom = self.zoom

        # Body, chest wall and thoracic cavity.
        bx, by, ba, bb, body_angle, body_power = self.body
        wobble = _smooth_field(rng, size, sigma=2.5)
        f_body = _ellipse(u, v, bx, by, ba, bb, body_angle, power=body_power) + 0.01 * wobble
        f_body = np.maximum(f_body, (v - by) - 0.95 * bb)  # the back lies flat on the couch
        fat, wall, back = self.fat, self.wall, self.back
        ca, cb = ba - fat - wall, bb - fat - wall - back / 2
        cx, cy = bx, by - back / 2
        f_cavity = _ellipse(u, v, cx, cy, ca, cb, body_angle, power=2.1) + 0.008 * wobble

        # Mediastinum: midline strip, spine, descending aorta, heart below the great vessels.
        mid_x = cx + self.mid_x
        spine_r, aorta_r = self.spine_r, self.aorta_r
        spine_y = cy + cb - 0.2 * spine_r
        aorta = (mid_x + spine_r + 0.5 * aorta_r, spine_y - spine_r - 0.1 * aorta_r)
        half_med = self.mediastinum * (1.0 + 0.8 * apex)
        organs = [(_ellipse(u, v, *aorta, aorta_r, aorta_r), 1.3 * aorta_r)]  # (signed distance, lung clearance)
        f_heart = None
        # The heart rests on the diaphragm: it ends above the lung bases, whose posterior recesses reach lower.
        heart_scale = _smoothstep((level - 0.2) / 0.3) * (1.0 - 0.3 * base) * (1.0 - _smoothstep((level - 0.8) / 0.2))
        if heart_scale > 0.05:
            hx_off, hy_off, ha_frac, hb_frac, angle, lobe_angle = self.heart
            hx, hy = mid_x + ca * hx_off, cy - cb * hy_off
            ha, hb = ca * ha_frac * heart_scale, cb * hb_frac * heart_scale
            f_heart = np.minimum(
                _ellipse(u, v, hx, hy, ha, hb, angle),
                _ellipse(u, v, hx - 0.45 * ha, hy + 0.3 * hb, 0.6 * ha, 0.55 * hb, angle + lobe_angle),
            )
            f_heart = f_heart + 0.01 * _smooth_field(rng, size, sigma=2.0)
            organs.append((f_heart, 0.02 * zoom))
        if level < 0.55:  # ascending aorta, pulmonary trunk, supra-aortic branches
            for k, (r_frac, x_off, y_off) in enumerate(self.great_vessels):
                r = zoom * (0.025 + r_frac * (0.035 if level > 0.3 else 0.01))
                organs.append((_ellipse(u, v, mid_x + x_off * zoom, cy - cb * y_off - 0.05 * k, r, r), 0.02 * zoom))
        f_med = np.abs(u - mid_x) - half_med
        f_med = np.minimum(f_med, _ellipse(u, v, mid_x, spine_y, spine_r * 1.5, spine_r * 1.4))
        for f_organ, clearance in organs:
            f_med = np.minimum(f_med, f_organ - clearance)

        lungs = np.zeros((size, size), dtype=bool)
        side_masks, domes = [], []
        for side, lung in zip((-1.0, 1.0), self.lungs, strict=True):  # -1: patient's right (image left)
            scale = (1.0 - 0.62 * apex * lung.apex_shrink) * extent
            dome_r = cb * base * lung.dome_radius * (1.15 if side < 0 else 0.95)  # the right dome is higher
            dome = (mid_x + side * ca * lung.dome_x, cy - cb * lung.dome_y)
            f_dome = _ellipse(u, v, *dome, dome_r * ca / cb * 1.1, dome_r) if dome_r > 0 else None
            if f_dome is not None:
                domes.append((dome, dome_r, f_dome))
            if scale < 0.05:  # above the apex or below the base
                side_masks.append(np.zeros((size, size), dtype=bool))
                continue
            la, lb = ca * lung.width * scale, cb * lung.height * scale
            lx = mid_x + side * (ca - la * lung.lateral)
            ly = cy + cb * (0.25 * apex + lung.shift)
            f_lung = np.maximum(f_cavity, _ellipse(u, v, lx, ly, la, lb, lung.angle, lung.power))
            f_lung = np.maximum(f_lung, -f_med)
            if f_dome is not None:  # the diaphragm dome pushes the lung into a posterolateral crescent
                f_lung = np.maximum(f_lung, -f_dome)
            f_lung = f_lung + 0.012 * _smooth_field(rng, size, sigma=2.5) + 0.005 * _smooth_field(rng, size, sigma=1.2)
            side_mask = f_lung < 0
            labels, n = ndimage.label(side_mask)
            if n > 1:  # keep the main part: a lung section is one connected region
                side_mask = labels == np.argmax(np.bincount(labels.ravel())[1:]) + 1
            side_masks.append(side_mask)
            lungs |= side_mask

        # Paint the anatomy in HU, from the outside in.
        fat_hu, muscle_hu, med_fat_hu, organ_hu, liver_hu = self.tissue_hu
        hu = np.full((size, size), AIR_HU)
        couch = by + bb + self.couch[0] - 0.12 * u**2
        hu[(np.abs(v - couch) < 1.5 * px) & (np.abs(u) < 0.95)] = self.couch[1]
        hu[(np.abs(v - couch - 0.045) < px) & (np.abs(u) < 0.9)] = self.couch[2]
        body = f_body < 0
        hu[body] = fat_hu
        hu[f_body < -fat] = muscle_hu
        cavity = f_cavity < 0
        hu[cavity & (f_med < 0)] = med_fat_hu
        for f_organ, _ in organs:
            hu[cavity & (f_organ < 0)] = organ_hu
        for dome, dome_r, f_dome in domes:
            hu[(f_dome < 0) & cavity] = liver_hu
            if dome[0] > mid_x and self.stomach_gas:  # gas in the stomach fundus, under the left dome
                gas = _ellipse(u, v, dome[0] + 0.02, dome[1] - 0.3 * dome_r, 0.4 * dome_r, 0.25 * dome_r) < 0
                hu[gas & (f_dome < -0.02) & (v < dome[1] - 0.2 * dome_r)] = AIR_HU + 20.0
        heart = np.zeros((size, size), dtype=bool)
        if f_heart is not None:  # in pericardial fat, so that it stands apart from the great vessels, liver and wall
            pericardium = _PERICARDIAL_FAT * zoom
            hu[cavity & (f_heart < pericardium)] = med_fat_hu
            heart = (f_cavity < -pericardium) & (f_heart < 0)
            hu[heart] = organ_hu

        # Lungs: denser towards the dependent (posterior) part, soft parenchymal texture, vessels from the hila and
        # vessel cross-sections; the vessels belong to the lung mask.
        lung_hu = self.lung_hu[0] + self.lung_hu[1] * (v - cy) / cb + 15.0 * _smooth_field(rng, size, 1.0, 48)
        hu[lungs] = lung_hu[lungs]
        heart &= ~lungs  # where a lung's wobbly edge reaches into the mediastinal fat that separates them
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
        vessel_hu = self.vessel_hu + 40.0 * _smooth_field(rng, size, sigma=1.0, coarse=48)
        hu[vessels] = vessel_hu[vessels]

        # Airways: the trachea above the carina, main bronchi at the hila; none of them belong to the lung mask.
        airway = np.zeros((size, size), dtype=bool)
        airway_wall = np.zeros((size, size), dtype=bool)
        trachea_r, trachea_x, trachea_y = self.trachea
        if level < 0.45:
            t_center = (mid_x + trachea_x, spine_y - spine_r - trachea_r * trachea_y)
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
        hu[airway] = AIR_HU + 20.0
        if self.oesophagus_air and level < 0.9:
            oesophagus = to_px(mid_x - 0.5 * aorta_r, spine_y - spine_r - 0.02)
            rr, cc = _ellipse_pixels(hu.shape, *oesophagus, 1.5 * size / 256, 2.5 * size / 256, 0.0)
            hu[rr, cc] = AIR_HU + 50.0
            heart[rr, cc] = False
        lungs &= ~airway_wall
        heart &= ~(airway | airway_wall)

        # Bones: spine, ribs around the cavity, sternum, scapulae and clavicles at the apex.
        bones = np.zeros((size, size))
        cortex, marrow = self.bone_hu
        sr, sc = to_px(mid_x, spine_y)
        rad = spine_r / px
        _paint_ellipse(bones, sr, sc, rad, rad, 0.0, cortex)
        _paint_ellipse(bones, sr, sc, rad * 0.82, rad * 0.82, 0.0, marrow)
        for lam in (-1, 1):  # laminae and transverse processes
            _paint_ellipse(bones, sr + 1.25 * rad, sc + lam * 0.7 * rad, 0.3 * rad, 0.9 * rad, lam * 0.5, cortex * 0.8)
        _paint_ellipse(bones, sr + 2.0 * rad, sc, 0.7 * rad, 0.2 * rad, 0.0, cortex * 0.85)  # spinous process
        _paint_ellipse(bones, sr + 1.25 * rad, sc, 0.45 * rad, 0.45 * rad, 0.0, 0.0)  # spinal canal
        n_ribs = int(rng.integers(6, 12))
        angles = np.concatenate([rng.uniform(-0.85, -0.1, n_ribs // 2), rng.uniform(0.1, 0.85, n_ribs - n_ribs // 2)])
        for phi in angles:
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
            for side, (x_frac, y_frac, rot) in zip((-1.0, 1.0), self.scapulae, strict=True):
                sx, sy = cx + side * ca * x_frac, cy + cb + wall * y_frac
                _paint_ellipse(bones, *to_px(sx, sy), 0.01 / px, 0.15 * zoom / px, side * rot, cortex * 0.8)
        if level < 0.2:
            for side in (-1.0, 1.0):
                clavicle = to_px(cx + side * 0.3 * ca, cy - cb - 0.2 * wall)
                _paint_ellipse(bones, *clavicle, 0.02 / px, 0.05 / px, side * 0.3, cortex * 0.8)
        # Bone replaces the soft tissue below it but never the lungs or the airways.
        bone = (bones != 0.0) & body & ~lungs & ~airway
        hu[bone] = bones[bone]
        heart &= ~bone
        labels = np.zeros((size, size), dtype=np.uint8)
        labels[side_masks[0] & lungs] = RIGHT_LUNG
        labels[side_masks[1] & lungs] = LEFT_LUNG
        labels[heart] = HEART
        return hu, labels


def scan(
    hu: np.ndarray,
    rng: np.random.Generator,
    *,
    sharpness: float,
    partial_volume: float = 0.8,
    gain: float = 1.0,
    offset: float = 0.0,
) -> np.ndarray:
    """A reconstructed CT image of a noise-free section: partial volume, kernel, noise and calibration.

    The kernel runs from smooth (``sharpness`` 0: edges blurred, low and coarse noise, like Siemens B40f) to sharp
    (1: edges enhanced, strong fine-grained noise, like B70f). Noise is the streaky texture of filtered
    back-projection (stronger along rays through more tissue) plus white detector noise.

    Args:
        hu: noise-free section in HU, ``(size, size)``.
        rng: random generator of the noise.
        sharpness: kernel sharpness in [0, 1].
        partial_volume: Gaussian blur of the anatomy in pixels at 256 x 256 (scaled with the size). Defaults to 0.8.
        gain: scanner calibration: HU are scaled by ``gain`` about soft tissue (40 HU). Defaults to 1.0.
        offset: added after the gain. Defaults to 0.

    Returns:
        float64 HU of the same shape (not clipped or rounded).
    """
    size = hu.shape[0]
    s = float(np.clip(sharpness, 0.0, 1.0))
    hu = filters.gaussian(hu, sigma=partial_volume * size / 256, preserve_range=True)
    detail = hu - filters.gaussian(hu, sigma=size / 256, preserve_range=True)
    hu = hu + (1.2 * s - 0.6) * detail  # a negative amount blurs, a positive one enhances edges
    inside = scan_circle(size)
    fbp = _fbp_noise(rng, hu, inside)
    white = rng.standard_normal((size, size))
    if s < 1.0:  # a smooth kernel also smooths the noise
        fbp = filters.gaussian(fbp, sigma=(1.0 - s) * size / 256)
        fbp /= fbp[inside].std() + 1e-8
        white = filters.gaussian(white, sigma=(1.0 - s) * size / 256)
        white /= white.std() + 1e-8
    hu = hu + (12.0 + 43.0 * s) * fbp + (8.0 + 28.0 * s) * white
    return gain * (hu - _SOFT_HU) + _SOFT_HU + offset
