"""Cell images: cell placement, shapes, the six stains, and one site from its well's design.

Lengths scale with the nucleus radius; ``render_signal`` draws the noiseless signal of every
channel and ``render_site`` adds the well's phenotype and the plate's acquisition.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from skimage.draw import line_aa

from moa_features.synthetic._seeds import seeded_rng
from moa_features.synthetic.acquisition import N_CHANNELS, BatchParams, acquire, batch_params
from moa_features.synthetic.design import PLATE_ROWS, ScreenSpec, WellPlan
from moa_features.synthetic.library import dose_effect, modifiers, treatment_effects


def _noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Unit-variance Gaussian random field with correlation length ``sigma`` pixels."""
    f = ndi.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sigma, mode="wrap")
    return f / f.std()


def _ridge(field: np.ndarray, width: float) -> np.ndarray:
    """Network of thin lines along the zero crossings of ``field`` (0-1)."""
    return np.exp(-((field / width) ** 2))


def _splat(shape: tuple[int, int], rows: np.ndarray, cols: np.ndarray, amp: np.ndarray, sigma: float) -> np.ndarray:
    """Sum of Gaussian spots of peak ``amp`` and width ``sigma`` px at (rows, cols)."""
    img = np.zeros(shape, np.float32)
    r = np.rint(rows).astype(int)
    c = np.rint(cols).astype(int)
    ok = (r >= 0) & (r < shape[0]) & (c >= 0) & (c < shape[1])
    np.add.at(img, (r[ok], c[ok]), amp[ok].astype(np.float32))
    return ndi.gaussian_filter(img, sigma) * np.float32(2 * np.pi * sigma**2)


def place_nuclei(rng: np.random.Generator, size: int, spacing: float, margin: float) -> np.ndarray:
    """Nucleus centres (N, 2) (row, col) px by random sequential addition: about one per
    ``spacing``² px² over the image grown by ``margin`` px, no two closer than 0.7 spacing."""
    lo, hi = -margin, size + margin
    n_target = rng.poisson((hi - lo) ** 2 / spacing**2)
    cand = rng.uniform(lo, hi, (4 * n_target + 1, 2))
    min_d2 = (0.7 * spacing) ** 2
    pts = np.empty((n_target, 2))
    k = 0
    for c in cand:
        if k == n_target:
            break
        if k and ((pts[:k] - c) ** 2).sum(1).min() < min_d2:
            continue
        pts[k] = c
        k += 1
    return pts[:k]


@dataclass
class Cells:
    """Per-cell geometry and state, arrays of length N (``state``: 0 interphase, 1 mitotic,
    2 apoptotic; angles in radians; lengths in px)."""

    nucleus: np.ndarray  # (N, 2) nucleus centre
    centre: np.ndarray  # (N, 2) cell centre
    theta: np.ndarray  # cell (and nucleus) long-axis angle
    polarity: np.ndarray  # angle of the leading side (Golgi side)
    cell_axes: np.ndarray  # (N, 2) semi-axes of the cell shape
    nucleus_axes: np.ndarray  # (N, 2) semi-axes of the nucleus
    wobble: np.ndarray  # (N, 4, 2) amplitude and phase of angular harmonics 2..5
    state: np.ndarray
    dna: np.ndarray  # DNA content (G1 = 1)


def draw_cells(rng: np.random.Generator, size: int, r_n: float, mods: Mapping[str, float], batch: BatchParams) -> Cells:
    """Random cells of one site: positions, shapes, orientations, cell-cycle states."""
    spacing = 5.2 * r_n / math.sqrt(mods["density"] * batch.density)
    pts = place_nuclei(rng, size, spacing, margin=spacing)
    n = len(pts)
    # Locally co-aligned cells: a smooth random orientation field plus per-cell scatter.
    k = rng.normal(0, 1, (3, 2))
    k *= (2 * np.pi / (rng.uniform(0.6, 1.5, 3) * 40 * r_n) / np.linalg.norm(k, axis=1))[:, None]
    field = (rng.normal(0, 0.8, 3) * np.sin(pts @ k.T + rng.uniform(0, 2 * np.pi, 3))).sum(1)
    theta = field + rng.uniform(0, np.pi) + rng.normal(0, 0.3, n)
    p_mit, p_apo = min(mods["mitotic"], 0.45), min(mods["apoptotic"], 0.45)
    state = rng.choice(3, size=n, p=[1 - p_mit - p_apo, p_mit, p_apo])
    g2 = (rng.random(n) < mods["g2_fraction"]) & (state == 0)
    dna = (1.0 + g2) * rng.lognormal(0, 0.08, n)
    area = mods["nucleus_area"] * (1 + 0.4 * g2) * rng.lognormal(0, 0.2, n) * batch.nucleus_scale**2
    nuc_aspect = 1.15 + rng.gamma(2.0, 0.12, n)
    aspect = np.maximum(1.0, (1.0 + rng.gamma(2.0, 0.22, n)) * mods["aspect"])
    scale = 0.68 * spacing * rng.lognormal(0, 0.12, n)
    radius = r_n * np.sqrt(area)
    # Mitotic: round cell, condensed elongated chromatin; apoptotic: small bright nucleus.
    mit, apo = state == 1, state == 2
    scale[mit] *= 0.55
    scale[apo] *= 0.45
    aspect[mit | apo] = 1.05
    radius[mit] *= 0.7
    nuc_aspect[mit] = 2.2
    radius[apo] *= 0.45
    nuc_aspect[apo] = 1.1
    dna[apo] *= 0.8
    polarity = theta + np.pi * rng.integers(0, 2, n) + rng.normal(0, 0.4, n)
    shift = 0.3 * scale * np.where(state == 0, 1.0, 0.0)
    centre = pts + shift[:, None] * np.stack([np.sin(polarity), np.cos(polarity)], 1)
    amp = rng.normal(0, 0.07, (n, 4)) / np.sqrt(np.arange(1, 5))
    amp[mit | apo] *= 0.3
    wobble = np.stack([amp, rng.uniform(0, 2 * np.pi, (n, 4))], -1)
    return Cells(
        nucleus=pts, centre=centre, theta=theta, polarity=polarity,
        cell_axes=np.stack([scale * np.sqrt(aspect), scale / np.sqrt(aspect)], 1),
        nucleus_axes=np.stack([radius * np.sqrt(nuc_aspect), radius / np.sqrt(nuc_aspect)], 1),
        wobble=wobble, state=state, dna=dna,
    )  # fmt: skip


def tessellate(cells: Cells, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Label image (0 background, i+1 cell i) and, per pixel, the normalised distances to
    the owning cell's centre (``dc``, 1 on its free edge) and nucleus (``dn``, 1 on the
    nuclear edge). Nuclei win over cytoplasm; elsewhere the smaller ``dc`` wins."""
    key = np.full((size, size), np.inf, np.float32)
    label = np.zeros((size, size), np.int32)
    dc = np.full((size, size), 2.0, np.float32)
    dn = np.full((size, size), 9.0, np.float32)
    grid = np.arange(size, dtype=np.float32)
    for i in range(len(cells.theta)):
        a, b = cells.cell_axes[i]
        amp, phase = cells.wobble[i, :, 0], cells.wobble[i, :, 1]
        ext = a * 1.15 * (1 + np.abs(amp).sum()) + 1
        cy, cx = cells.centre[i]
        r0, r1 = max(0, int(cy - ext)), min(size, int(cy + ext) + 1)
        c0, c1 = max(0, int(cx - ext)), min(size, int(cx + ext) + 1)
        if r0 >= r1 or c0 >= c1:
            continue
        ys, xs = grid[r0:r1, None], grid[None, c0:c1]
        cos, sin = math.cos(cells.theta[i]), math.sin(cells.theta[i])
        dy, dx = ys - np.float32(cy), xs - np.float32(cx)
        u, v = dx * cos + dy * sin, dy * cos - dx * sin
        rho = np.sqrt(u * u + v * v) + np.float32(1e-6)
        c1_, s1_ = u / rho, v / rho  # cos, sin of the polar angle; harmonics by recurrence
        ck, sk = c1_, s1_
        wob = np.ones_like(u)
        for h in range(4):  # harmonics 2..5: cos(k phi + phase) = cos k phi cos p - sin k phi sin p
            ck, sk = ck * c1_ - sk * s1_, sk * c1_ + ck * s1_
            wob += np.float32(amp[h] * math.cos(phase[h])) * ck - np.float32(amp[h] * math.sin(phase[h])) * sk
        d = np.sqrt((u / a) ** 2 + (v / b) ** 2) / wob
        ny, nx = cells.nucleus[i]
        na, nb = cells.nucleus_axes[i]
        dy, dx = ys - np.float32(ny), xs - np.float32(nx)
        un, vn = dx * cos + dy * sin, dy * cos - dx * sin
        dnuc = np.sqrt((un / na) ** 2 + (vn / nb) ** 2)
        k = np.where(dnuc < 1, dnuc - 1, d)
        win = key[r0:r1, c0:c1]
        m = (k < win) & (k < 1.15)
        win[m] = k[m]
        label[r0:r1, c0:c1][m] = i + 1
        dc[r0:r1, c0:c1][m] = d[m]
        dn[r0:r1, c0:c1][m] = dnuc[m]
    return label, dc, dn


def _borders(label: np.ndarray) -> np.ndarray:
    """Boolean mask of pixels whose 4-neighbour has a different label (both sides)."""
    b = np.zeros(label.shape, bool)
    v = label[:-1] != label[1:]
    b[:-1] |= v
    b[1:] |= v
    h = label[:, :-1] != label[:, 1:]
    b[:, :-1] |= h
    b[:, 1:] |= h
    return b


def render_signal(
    rng: np.random.Generator, size: int, r_n: float, mods: Mapping[str, float], batch: BatchParams
) -> tuple[np.ndarray, int]:
    """Noise-free stain signal (6, size, size) float32 (about 0-2, unit = typical
    intensity) and the number of cells whose nucleus lies in the image."""
    shape = (size, size)
    cells = draw_cells(rng, size, r_n, mods, batch)
    n = len(cells.theta)
    label, dc, dn = tessellate(cells, size)
    rough = _noise(rng, shape, 0.4 * r_n)
    label[(label > 0) & (dn >= 1) & (dc + 0.07 * rough > 1)] = 0
    cell = label > 0
    nuc = cell & (dn < 1)
    cyto = cell & ~nuc
    lab = label - 1  # index into per-cell arrays where cell

    def per_cell(values: np.ndarray) -> np.ndarray:
        return np.where(cell, values.astype(np.float32)[lab], 0).astype(np.float32)

    mit = cells.state == 1
    dna_density = cells.dna * r_n**2 / np.prod(cells.nucleus_axes, 1)
    inter = cells.state == 0
    dist_out = np.maximum(dn - 1, 0)  # distance outside the nucleus, in nuclear radii
    f_fine = _noise(rng, shape, max(0.6, 0.1 * r_n))
    f_med = _noise(rng, shape, 0.3 * r_n)

    # w1 Hoechst: domed nuclei with chromatin texture.
    dome = np.where(nuc, 1 - 0.35 * np.minimum(dn, 1) ** 2, 0)
    chrom = np.clip(1 + 0.15 * f_fine + 0.12 * f_med, 0.2, None)
    w1 = per_cell(dna_density * rng.lognormal(0, 0.06, n)) * dome * chrom

    # w2 concanavalin A: perinuclear reticular ER, bright envelope, dim nucleus.
    er = per_cell(mods["er"] * rng.lognormal(0, 0.25, n))
    reticulum = 0.55 + 0.6 * _ridge(_noise(rng, shape, 0.25 * r_n), 0.5)
    envelope = cell * np.exp(-(((dn - 1) / 0.15) ** 2))
    w2 = er * (cyto * (0.3 + 0.7 * np.exp(-dist_out / 1.0)) * reticulum + 0.12 * nuc + 0.35 * envelope)

    # w3 phalloidin: stress fibres along each cell's axis, cortical actin, diffuse cytoplasm.
    fi = np.repeat(np.flatnonzero(inter), rng.poisson(7 * mods["fibres"], inter.sum()))
    ang = cells.theta[fi] + rng.normal(0, 0.12, len(fi))
    off = rng.uniform(-0.8, 0.8, len(fi)) * cells.cell_axes[fi, 1]
    along = rng.uniform(-0.3, 0.3, len(fi)) * cells.cell_axes[fi, 0]
    half = rng.uniform(0.6, 1.1, len(fi)) * cells.cell_axes[fi, 0]
    cy = cells.centre[fi, 0] + off * np.cos(ang) + along * np.sin(ang)
    cx = cells.centre[fi, 1] - off * np.sin(ang) + along * np.cos(ang)
    ends = np.rint(
        [
            cy - half * np.sin(ang),
            cx - half * np.cos(ang),
            cy + half * np.sin(ang),
            cx + half * np.cos(ang),
        ]
    )
    fib = np.zeros(shape, np.float32)
    for (y0, x0, y1, x1), w in zip(ends.astype(int).T.tolist(), rng.uniform(0.4, 1.0, len(fi)).tolist()):
        rr, cc, val = line_aa(y0, x0, y1, x1)
        ok = (rr >= 0) & (rr < size) & (cc >= 0) & (cc < size)
        fib[rr[ok], cc[ok]] += val[ok] * w
    fib = ndi.gaussian_filter(fib, max(0.01, 0.06 * r_n)) * cell
    borders = ndi.gaussian_filter(_borders(label).astype(np.float32), 0.1 * r_n)
    cortical = per_cell(mods["cortical"] * (1 + 1.5 * mit) * rng.lognormal(0, 0.25, n))
    fibres = per_cell(rng.lognormal(0, 0.3, n)) * np.minimum(fib, 1.5)
    w3 = fibres + cortical * 0.6 * borders + 0.35 * cyto + 0.12 * nuc

    # w4 SYTO14: nucleoli, nucleoplasm, faint perinuclear cytoplasmic RNA.
    rna = per_cell(rng.lognormal(0, 0.2, n))
    idx = np.repeat(np.flatnonzero(inter), 1 + rng.poisson(1.5, inter.sum()))
    rad = np.sqrt(rng.uniform(0, 0.35, len(idx)))
    ang = rng.uniform(0, 2 * np.pi, len(idx))
    ax = cells.nucleus_axes[idx]
    t = cells.theta[idx]
    u, v = rad * ax[:, 0] * np.cos(ang), rad * ax[:, 1] * np.sin(ang)
    rows = cells.nucleus[idx, 0] + u * np.sin(t) + v * np.cos(t)
    cols = cells.nucleus[idx, 1] + u * np.cos(t) - v * np.sin(t)
    amp = rng.uniform(0.6, 1.2, len(idx)) * mods["nucleolus"]
    nucleoli = _splat(shape, rows, cols, amp, 0.17 * r_n * mods["nucleolus_size"]) * nuc
    cyto_rna = 0.4 * mods["rna"] * cyto * np.exp(-dist_out / 2.0) * (1 + 0.25 * f_fine)
    w4 = rna * (nuc * 0.7 + 1.5 * nucleoli + cyto_rna)

    # w5 MitoTracker: tubules and puncta in the cytoplasm, densest near the nucleus.
    tub = _ridge(_noise(rng, shape, 0.25 * r_n), 0.5)
    punct = np.clip(_noise(rng, shape, 0.2 * r_n) - 0.5, 0, None)
    tubular = min(mods["tubular"], 1.0)
    mito = per_cell(mods["mito"] * rng.lognormal(0, 0.3, n))
    bright = rng.integers(0, n, max(1, n // 4))
    rows, cols = (cells.nucleus[bright] + rng.normal(0, 1.5 * r_n, (len(bright), 2))).T
    spots = _splat(shape, rows, cols, rng.uniform(2, 5, len(bright)), 0.25 * r_n)
    texture = 0.35 + tubular * tub + (1 - tubular) * 1.3 * punct
    w5 = cyto * (mito * (np.exp(-dist_out / 1.8) * texture + 0.1) + spots)

    # w6 WGA: Golgi ribbon at the nucleus (leading side), plasma membrane, faint nuclei.
    gi = np.repeat(np.flatnonzero(inter), 6)
    ga = cells.polarity[gi] + rng.normal(0, 0.45, len(gi))
    reach = cells.nucleus_axes[gi, 1] * (1.25 + 0.3 * mods["golgi_size"] * rng.random(len(gi)))
    rows = cells.nucleus[gi, 0] + reach * np.sin(ga)
    cols = cells.nucleus[gi, 1] + reach * np.cos(ga)
    amp = rng.uniform(0.3, 0.8, len(gi)) * mods["golgi"]
    golgi = _splat(shape, rows, cols, amp, 0.3 * r_n * mods["golgi_size"])
    wga = per_cell(rng.lognormal(0, 0.2, n))
    w6 = wga * (0.45 * borders + 0.7 * nuc * chrom + 0.25 * cyto) + golgi * cell

    signal = np.stack([w1, w2, w3, w4, w5, w6]).astype(np.float32)
    inside = (cells.nucleus >= 0).all(1) & (cells.nucleus < size).all(1)
    return signal, int(inside.sum())


def render_site(spec: ScreenSpec, seed: int, plan: WellPlan, site: int) -> tuple[np.ndarray, int, float]:
    """Images of one site: (6, S, S) uint8, the number of cells, the phenotype strength."""
    batch = batch_params(spec, seed, plan.experiment_index, plan.plate)
    row, col = PLATE_ROWS.index(plan.well[:-2]), int(plan.well[-2:])
    rw = seeded_rng(seed, 3, plan.experiment_index, plan.plate, row, col)
    effect = dose_effect(plan.treatment, plan.conc, spec.phenotype_strength) * rw.lognormal(0, 0.15)
    density = rw.lognormal(0, 0.06)
    gain_jitter = np.exp(rw.normal(0, 0.03 * spec.batch_strength, N_CHANNELS)).astype(np.float32)
    mods = modifiers(treatment_effects(plan.treatment, seed, spec.treatment_deviation), effect)
    rs = seeded_rng(seed, 4, plan.experiment_index, plan.plate, row, col, site)
    mods["density"] *= density * rs.lognormal(0, 0.08)
    signal, n_cells = render_signal(rs, spec.image_size, spec.nucleus_radius, mods, batch)
    psf = max(0.5, 0.11 * spec.nucleus_radius) * rs.lognormal(0, 0.1)
    haze = round(3 * spec.nucleus_radius)
    return acquire(rs, signal, batch, psf, haze, gain_jitter), n_cells, float(effect)
