"""Camera noise calibration: dark frames + flat-field pairs -> a darkseg camera profile.

All maths of ``darkseg calibrate`` lives here; file discovery and reading are in
:mod:`darkseg.synth.calibrate_frames`, plots in :mod:`darkseg.synth.calibrate_plots`.

Model calibrated (black-subtracted DN; the letters of :mod:`darkseg.synth.noise`)::

    D = K * Poisson(I) + sigma_TL * TukeyLambda(lam) + N(0, sigma_r^2)[row, channel] + b_c + quantisation

Per ISO (every array here is *packed*: ``(h, w, 4)`` planes R, G1, B, G2, in DN above the nominal black):

* **System gain K** (photon transfer): each flat pair (A, B) is cut into ``tile x tile`` tiles per
  channel; per tile ``mu = mean((A + B) / 2) - b_c`` and ``v = var(A - B) / 2`` (the difference cancels the
  scene and the pixel response non-uniformity). Tiles with a masked (bad) pixel, a clipped pixel or
  ``mu + 3 sqrt(v) > 0.9 (white - black)`` are dropped. ``v = K mu + c`` is fitted per channel by
  iteratively reweighted least squares (weights ``1 / v_pred^2``, as the variance of a tile variance is
  proportional to its square) with 5-MAD outlier rejection; K = mean over the channels. A level shot
  only once gives single-frame points instead: ``v`` = variance of the third difference along rows
  (``[-1, 3, -3, 1] / sqrt(20)``, which removes the scene up to a quadratic and the row noise), and the
  fit ``v = K mu + c + a mu^2`` absorbs the response non-uniformity that one frame cannot cancel.
* **Dark frames**: master dark ``M`` = per-pixel mean; bad pixels ``|M - median| > 6 * 1.4826 MAD(M)``
  per channel that are also off in most single frames (:func:`bad_pixel_mask`) are masked everywhere;
  colour bias ``b_c`` = mean of ``M`` over the good pixels. Per frame ``X = frame - b_c``; row means
  ``m_i``; row noise ``sigma_r^2 = var(m_i) - mean_i(s_i^2 / n_i)`` (the read noise that a row mean of
  ``n_i`` pixels still carries is subtracted; ``s_i^2`` = within-row variance). ``Y = X - m_i`` (rows
  removed). The probability plots use **all** values of ``Y`` pooled over the ISO's frames and channels:
  they are sorted once and :data:`PPCC_POINTS` evenly spaced order statistics (every one of them when
  there are fewer) between the :data:`TAIL_TRIM` and ``1 - TAIL_TRIM`` quantiles are plotted against the
  quantiles at their plotting positions (Filliben's, as ``scipy.stats.probplot``), so the fit has no
  random subsample and gives the same result on every run.
  The Tukey shape ``lam`` maximises the correlation of that plot (bounded Brent search over
  :data:`LAMBDA_RANGE`); ``sigma_TL`` = its slope, ``sigma_g`` = the slope of the normal plot. Both scales
  are corrected for the row-mean removal (factor ``sqrt(n / (n - 1))``) and for the integer quantisation
  of the file (Sheppard: ``1/12`` DN^2 removed from the variance in units of the reference
  distribution), so they are the continuous scales darkseg's sampler draws.
* **Dark frames clipped at black** (some cameras subtract the black level and clip the negative half;
  detected when more than :data:`CLIPPED_DARK` of a frame's values sit at a minimum at or above black):
  the centre ``b_c`` is the median (the clip level when half or more is clipped), the row offsets a row
  quantile above the clipped mass (their own read-noise share measured on the values shuffled across
  rows), and the probability plots use the values above the centre with their mirror images
  (symmetric read noise assumed), rows not removed: the row variance ``sigma_r^2`` is subtracted from
  the plots' variances instead. Clipped frames whose noise is below :data:`MIN_CLIPPED_NOISE` are
  refused. Frames with no noise (all values equal: all-zero frames) or with
  :data:`MAX_CLIPPED_DARK` or more clipped are refused.
* **Cross-ISO fits** (one point per calibrated ISO): ordinary least squares ``ln s = slope ln K + bias``
  for ``s`` in ``g_scale`` (sigma_g), ``G_scale`` (sigma_TL), ``R_scale`` (sigma_r); ``sigma`` = RMS
  residual, as the shipped profiles store. ``Kmin``/``Kmax`` = the extreme per-ISO K, ``G_shape`` = the
  per-ISO lam, ``color_bias`` = the per-ISO ``b_c`` rows, both sorted by K.

:func:`simulate_raw_frame` draws a RAW frame from the same model with darkseg's own samplers (used by the
tests, the benchmark and the validation of a calibration).
"""

from __future__ import annotations

import datetime as _dt
import math
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from darkseg.raw.bayer import unpack_bayer
from darkseg.synth.noise import tukey_lambda_ppf, tukey_lambda_variance
from darkseg.synth.poisson import poisson_numpy

__all__ = [
    "CalibrationError",
    "GainResult",
    "DarkResult",
    "IsoResult",
    "LogLinearFit",
    "bad_pixel_mask",
    "ptc_points_pair",
    "ptc_points_single",
    "fit_ptc",
    "estimate_gain",
    "analyse_darks",
    "fit_loglinear",
    "build_profile",
    "simulate_raw_frame",
    "dark_frame_summary",
]

#: quantisation step of the files (integer DN)
QUANT_VAR = 1.0 / 12.0
#: bad pixel threshold in robust standard deviations of the master dark
BAD_PIXEL_SIGMAS = 6.0
#: bad pixel threshold when there is one dark frame only (no persistence test possible)
SINGLE_FRAME_SIGMAS = 20.0
#: tiles whose ``mu + 3 sqrt(v)`` exceeds this fraction of ``white - black`` are not used for K
SATURATION_FRACTION = 0.9
#: at least this many usable tiles per channel for a photon-transfer fit
MIN_PTC_POINTS = 8
#: smallest photon-transfer tile (packed pixels per side): a tile variance from fewer than 16 values is noise
MIN_TILE = 4
#: order statistics of all row-removed dark values that the Tukey-lambda / normal probability plots use
PPCC_POINTS = 200_000
#: the same for the per-frame diagnostic scales
FRAME_POINTS = 20_000
#: the probability plots leave out this fraction of the values at each end: the few most extreme values of
#: heavy-tailed read noise swing the fit (at lambda -0.24 the spread between shoots is 4x smaller without
#: them; docs/calibration.md)
TAIL_TRIM = 1e-4
#: the Tukey shapes searched (below -0.5 the variance is infinite)
LAMBDA_RANGE = (-0.49, 1.0)
#: dark frames with more than this fraction of values at a minimum at or above black are "clipped at black"
CLIPPED_DARK = 0.01
#: ... and with this fraction or more there is too little noise left to measure
MAX_CLIPPED_DARK = 0.9
#: clipped dark frames need this read-noise standard deviation (DN): below it the integer steps dominate
#: the half above the clip (measured: sigma_TL 5 % high at 1.8 DN, 1.4 % at 2.7 DN; docs/calibration.md)
MIN_CLIPPED_NOISE = 2.0


class CalibrationError(ValueError):
    """The frames cannot give a calibration (too few usable frames, a failed fit); says which ISO."""


# ------------------------------------------------------------------------------------------- helpers


def _mad_sigma(x: np.ndarray) -> float:
    """Robust standard deviation: 1.4826 * median absolute deviation."""
    x = np.asarray(x, dtype=np.float64)
    return float(1.4826 * np.median(np.abs(x - np.median(x))))


def _r2(y: np.ndarray, pred: np.ndarray) -> float:
    ss_res = float(np.sum((y - pred) ** 2))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    return 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan")


def _tiles(plane: np.ndarray, tile: int) -> np.ndarray:
    """``(h, w)`` -> ``(n_tiles, tile * tile)`` (the ragged border is dropped)."""
    h, w = plane.shape[0] // tile * tile, plane.shape[1] // tile * tile
    t = plane[:h, :w].reshape(h // tile, tile, w // tile, tile).swapaxes(1, 2)
    return t.reshape(-1, tile * tile)


# ---------------------------------------------------------------------------------------- system gain


def ptc_points_pair(
    a: np.ndarray,
    b: np.ndarray,
    saturation: float,
    bias: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    tile: int = 32,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Photon-transfer points of one flat pair: per channel ``(mu, v)`` arrays (see the module doc).

    ``a``, ``b``: packed ``(h, w, 4)`` DN above black; ``saturation`` = white - black (DN);
    ``bias``: ``(4,)`` colour bias subtracted from ``mu``; ``mask``: ``(h, w, 4)`` True = bad pixel.
    """
    out = []
    for c in range(a.shape[2]):
        ta = _tiles(a[:, :, c].astype(np.float64), tile)
        tb = _tiles(b[:, :, c].astype(np.float64), tile)
        clip = np.maximum(ta.max(1), tb.max(1)) >= saturation - 0.5
        if mask is not None and mask[:, :, c].any():  # bad pixels are left out of their tile
            tm = _tiles(mask[:, :, c], tile)
            ta, tb = np.where(tm, np.nan, ta), np.where(tm, np.nan, tb)
            clip = np.nanmax(np.maximum(ta, tb), 1) >= saturation - 0.5
            mu = 0.5 * (np.nanmean(ta, 1) + np.nanmean(tb, 1))
            v = 0.5 * np.nanvar(ta - tb, 1, ddof=1)
        else:
            mu = 0.5 * (ta.mean(1) + tb.mean(1))
            v = 0.5 * (ta - tb).var(1, ddof=1)
        mu -= 0.0 if bias is None else float(bias[c])
        ok = ~clip & np.isfinite(v) & (mu + 3.0 * np.sqrt(v) <= SATURATION_FRACTION * saturation)
        out.append((mu[ok], v[ok]))
    return out


_HP = 20.0  # sum of squares of [-1, 3, -3, 1]


def ptc_points_single(
    a: np.ndarray,
    saturation: float,
    bias: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    tile: int = 32,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Single-frame photon-transfer points: ``v`` = variance of the row-wise third difference / 20."""
    out = []
    for c in range(a.shape[2]):
        p = a[:, :, c].astype(np.float64)
        if mask is not None and mask[:, :, c].any():
            p = np.where(mask[:, :, c], np.nan, p)  # a bad pixel spoils the 4 differences it enters
        hp = np.diff(p, n=3, axis=1)  # [-1, 3, -3, 1] along rows: kills offsets, row noise, slow scene
        tp = _tiles(p[:, : hp.shape[1]], tile)
        th = _tiles(hp, tile)
        with np.errstate(invalid="ignore"):
            mu = np.nanmean(tp, 1) - (0.0 if bias is None else float(bias[c]))
            v = np.nanvar(th, 1, ddof=1) / _HP
            ok = (np.nanmax(tp, 1) < saturation - 0.5) & np.isfinite(v)
            ok &= mu + 3.0 * np.sqrt(v) <= SATURATION_FRACTION * saturation
        out.append((mu[ok], v[ok]))
    return out


def fit_ptc(mu: np.ndarray, v: np.ndarray, quadratic: bool = False, iters: int = 6) -> dict[str, Any]:
    """Robust fit of ``v = K mu + c (+ a mu^2)``.

    Iteratively reweighted least squares with weights ``1 / v_pred^2`` and rejection of points whose
    relative residual is beyond 5 robust standard deviations. Returns ``K``, ``c``, ``a`` (0 for the
    linear fit), ``r2`` (on the kept points, unweighted), ``inliers`` (bool mask), ``n``.
    """
    mu = np.asarray(mu, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    if mu.size < MIN_PTC_POINTS:
        raise CalibrationError(f"{mu.size} usable photon-transfer points (need {MIN_PTC_POINTS})")
    if np.ptp(mu) <= 0:
        raise CalibrationError("all flat tiles have the same mean: need several exposure levels")
    cols = [mu, np.ones_like(mu)] + ([mu**2] if quadratic else [])
    design = np.stack(cols, 1)
    keep = np.ones(mu.size, bool)
    coef = np.linalg.lstsq(design, v, rcond=None)[0]
    for _ in range(iters):
        pred = np.maximum(design @ coef, 1e-6 * max(float(v.max()), 1e-12))
        rel = (v - pred) / pred
        s = _mad_sigma(rel[keep]) or 1e-12
        keep = np.abs(rel - np.median(rel[keep])) <= 5.0 * s
        if keep.sum() < len(cols) + 2:
            raise CalibrationError("photon-transfer fit rejected almost every point")
        w = 1.0 / pred[keep]
        coef = np.linalg.lstsq(design[keep] * w[:, None], v[keep] * w, rcond=None)[0]
    k = float(coef[0])
    if not k > 0:
        raise CalibrationError(f"photon-transfer slope K = {k:.4g} is not positive (flats too dark or flat?)")
    return {
        "K": k,
        "c": float(coef[1]),
        "a": float(coef[2]) if quadratic else 0.0,
        "r2": _r2(v[keep], design[keep] @ coef),
        "inliers": keep,
        "n": int(keep.sum()),
    }


@dataclass
class GainResult:
    """System gain of one ISO. ``points``: per channel ``(mu, v, inlier)`` arrays (for plots)."""

    K: float
    K_channels: list[float]
    c_channels: list[float]
    r2_channels: list[float]
    mode: str  # "pairs" or "single"
    n_pairs: int
    n_single: int
    n_points: int
    points: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=list, repr=False)

    @property
    def r2(self) -> float:
        return float(np.mean(self.r2_channels))

    @property
    def spread(self) -> float:
        """Relative spread of the per-channel K (std / mean)."""
        return float(np.std(self.K_channels) / self.K)

    def summary(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k != "points"}
        d.update(r2=self.r2, K_spread=self.spread)
        return d


def estimate_gain(
    levels: list[list[np.ndarray]],
    saturation: float,
    bias: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    tile: int = 32,
) -> GainResult:
    """K from flat frames grouped by exposure level (each level: a list of packed frames).

    Levels with two or more frames give pair points (frames 0-1, 2-3, ...); if fewer than two levels
    have pairs, the single-frame estimator runs on every frame instead (needs 3 or more levels).
    """
    n_pair_levels = sum(len(lv) >= 2 for lv in levels)
    mode = "pairs" if n_pair_levels >= 2 else "single"
    if mode == "single" and len(levels) < 3:
        raise CalibrationError(
            f"{len(levels)} exposure level(s) with {n_pair_levels} pair(s): need 2 or more levels with 2 "
            "frames each, or 3 or more levels of single frames"
        )
    per_ch: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in range(4)]
    n_pairs = n_single = 0
    for lv in levels:
        if mode == "pairs":
            for i in range(0, len(lv) - 1, 2):
                for c, pts in enumerate(ptc_points_pair(lv[i], lv[i + 1], saturation, bias, mask, tile)):
                    per_ch[c].append(pts)
                n_pairs += 1
        else:
            for f in lv:
                for c, pts in enumerate(ptc_points_single(f, saturation, bias, mask, tile)):
                    per_ch[c].append(pts)
                n_single += 1
    ks, cs, r2s, points = [], [], [], []
    for c in range(4):
        mu = np.concatenate([p[0] for p in per_ch[c]]) if per_ch[c] else np.zeros(0)
        v = np.concatenate([p[1] for p in per_ch[c]]) if per_ch[c] else np.zeros(0)
        fit = fit_ptc(mu, v, quadratic=mode == "single")
        ks.append(fit["K"])
        cs.append(fit["c"])
        r2s.append(fit["r2"])
        points.append((mu, v, fit["inliers"]))
    return GainResult(
        K=float(np.mean(ks)),
        K_channels=ks,
        c_channels=cs,
        r2_channels=r2s,
        mode=mode,
        n_pairs=n_pairs,
        n_single=n_single,
        n_points=int(sum(int(p[2].sum()) for p in points)),
        points=points,
    )


# -------------------------------------------------------------------------------------- dark frames


def _outliers(plane: np.ndarray, sigmas: float) -> np.ndarray:
    med = float(np.median(plane))
    s = _mad_sigma(plane[:: max(1, plane.shape[0] // 256), :: max(1, plane.shape[1] // 256)])
    if s <= 0:
        s = float(np.std(plane)) or 1.0
    return np.abs(plane - med) > sigmas * s


def bad_pixel_mask(
    master: np.ndarray, frames: list[np.ndarray] | None = None, sigmas: float = BAD_PIXEL_SIGMAS
) -> np.ndarray:
    """``(h, w, 4)`` True for hot/dead/stuck pixels.

    A pixel is bad when the master dark is beyond ``sigmas`` robust standard deviations of its channel
    **and** (with 2 or more ``frames``) it is beyond 3 of its frame's in at least half of the frames (and
    2): a stuck pixel is off in every frame, a tail value of heavy-tailed read noise in one. With a
    single frame the two cannot be told apart, and the threshold is :data:`SINGLE_FRAME_SIGMAS` instead.
    """
    n = len(frames) if frames is not None else 0
    mask = np.zeros(master.shape, bool)
    for c in range(master.shape[2]):
        mask[:, :, c] = _outliers(master[:, :, c], sigmas if n != 1 else SINGLE_FRAME_SIGMAS)
        if n >= 2 and mask[:, :, c].any():
            hits = np.zeros(master.shape[:2], np.int32)
            for f in frames:
                hits += _outliers(f[:, :, c], 3.0)
            mask[:, :, c] &= hits >= max(2, math.ceil(n / 2))
    return mask


@dataclass
class DarkResult:
    """Signal-independent noise of one ISO (DN; scales already corrected, see the module doc).

    ``bias``: colour bias (R, G1, B, G2); ``lam``: Tukey shape (PPCC maximum); ``tl_scale``/``tl_r``,
    ``g_scale``/``g_r``: Tukey-lambda and normal probability-plot scales and correlations of the
    row-removed values; ``row_scale``/``row_r``: row noise and the normal probability-plot correlation of
    the row means; ``read_total``: standard deviation of the good pixels (everything included);
    ``frame_*``: per-frame values (mean over the channels).
    """

    n_frames: int
    bias: list[float]
    bad_pixels: int
    lam: float
    tl_scale: float
    tl_r: float
    g_scale: float
    g_r: float
    row_scale: float
    row_r: float
    read_total: float
    frame_tl_scale: list[float] = field(default_factory=list)
    frame_row_scale: list[float] = field(default_factory=list)
    frame_std: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return asdict(self)


def clipped_fraction(frame: np.ndarray) -> float:
    """Fraction of a dark frame's values (DN above black, any shape) at its minimum when that minimum is
    at or above the black level: the pixels a camera that clips at black has clipped (0 when any value
    lies below black, as in an unclipped dark frame)."""
    lo = float(np.min(frame))
    if lo < -0.5:
        return 0.0
    return float(np.mean(frame <= lo + 0.5))


def _order_statistics(y: np.ndarray, points: int) -> tuple[np.ndarray, np.ndarray]:
    """``points`` evenly spaced order statistics of all of ``y`` between the :data:`TAIL_TRIM` and
    ``1 - TAIL_TRIM`` quantiles, and their plotting positions (Filliben's, as ``scipy.stats.probplot``):
    ``(positions (M,), values (M,))``."""
    s = np.sort(np.asarray(y, dtype=np.float32).ravel())
    n = s.size
    cut = int(TAIL_TRIM * n)
    if points >= n - 2 * cut:
        rank = np.arange(1 + cut, n - cut + 1, dtype=np.int64)
    else:  # steps of more than one rank: distinct
        rank = np.rint(np.linspace(1 + cut, n - cut, points)).astype(np.int64)
    pos = (rank - 0.3175) / (n + 0.365)
    pos[rank == n] = 0.5 ** (1.0 / n)
    pos[rank == 1] = 1.0 - 0.5 ** (1.0 / n)
    return pos, s[rank - 1].astype(np.float64)


def _probplot_fit(pos: np.ndarray, vals: np.ndarray, lam: float | None) -> tuple[float, float]:
    """Slope and correlation of the probability plot of ``vals`` against the Tukey-lambda (``lam``) or,
    with ``lam=None``, the normal quantiles at ``pos``."""
    from scipy.special import ndtri

    q = ndtri(pos) if lam is None else tukey_lambda_ppf(pos, lam)
    qc, vc = q - q.mean(), vals - vals.mean()
    sqq, svv = float(qc @ qc), float(vc @ vc)
    slope = float(qc @ vc) / sqq
    return slope, float(qc @ vc) / math.sqrt(sqq * svv) if svv > 0 else 0.0


def _ppcc_lambda(pos: np.ndarray, vals: np.ndarray) -> float:
    """The Tukey shape in [-0.49, 1] whose probability plot is straightest (maximum correlation)."""
    from scipy.optimize import minimize_scalar

    res = minimize_scalar(
        lambda lam: -_probplot_fit(pos, vals, lam)[1],
        bounds=(LAMBDA_RANGE[0], LAMBDA_RANGE[1]),
        method="bounded",
        options={"xatol": 1e-4},
    )
    return float(res.x)


def _rows_clipped(x: np.ndarray, g: np.ndarray, lo: float, rng: np.random.Generator):
    """Row offsets of a clipped dark plane ``x`` (DN above black, ``g`` good pixels, clip level ``lo``).

    A row quantile above the clipped mass (level ``(1 + p0) / 2``, at least the median) minus the same
    quantile of the plane; the read noise such a row statistic still carries is measured on the same
    values shuffled across rows. Returns ``(offsets (h,), rows with 2+ pixels (h,) bool, read share)``.
    """
    p0 = float(np.mean(x[g] <= lo + 0.5))
    level = max(0.5, (1.0 + p0) / 2.0)
    cnt = g.sum(1)
    rows = cnt >= 2
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows (every pixel bad): not used
        off = np.nanquantile(np.where(g, x, np.nan), level, axis=1) - np.quantile(x[g], level)
    off = np.where(rows, off, 0.0)
    vals = x[g]  # integer values like the rows' own (the quantisation is part of the estimator's noise)
    width = max(2, int(np.median(cnt[rows])))
    k = vals.size // width
    shuffled = vals[rng.permutation(vals.size)[: k * width]].reshape(k, width)
    read_share = float(np.var(np.quantile(shuffled, level, axis=1), ddof=1)) if k >= 2 else 0.0
    return off, rows, read_share


def _mirrored(y: np.ndarray, uncensored: np.ndarray, centre_censored: bool) -> np.ndarray:
    """A symmetric sample from the upper half of clipped noise ``y`` (centred): the values above the
    centre, their mirror images and the centre's own mass (when the centre itself is clipped, taken as
    the count of the smallest value above it)."""
    u = y[uncensored & (y > 0)]
    n0 = int(np.count_nonzero(uncensored & (y == 0)))
    if centre_censored and u.size:
        n0 = int(np.count_nonzero(u == u.min()))
    return np.concatenate([u, -u, np.zeros(n0, u.dtype)])


def analyse_darks(
    frames: list[np.ndarray],
    mask: np.ndarray | None = None,
    points: int = PPCC_POINTS,
) -> tuple[DarkResult, np.ndarray]:
    """Colour bias, bad pixels, row noise, Tukey-lambda and Gaussian read noise from dark frames.

    ``frames``: packed ``(h, w, 4)`` dark frames of one ISO in DN above the nominal black (float).
    ``mask``: extra bad pixels (True = bad) to ignore besides the ones found here.
    ``points``: order statistics of all the row-removed values the probability-plot fits use.
    Frames clipped at the black level (:func:`clipped_fraction` above :data:`CLIPPED_DARK`) are measured
    from the half of the noise above its centre (module docstring).
    Returns the result and the bad-pixel mask used. Raises :class:`CalibrationError` for frames without
    noise (all values equal, e.g. all-zero frames) or clipped on more than :data:`MAX_CLIPPED_DARK`.
    """
    n = len(frames)
    if n < 1:
        raise CalibrationError("no dark frames")
    clip = max(clipped_fraction(f) for f in frames)
    if clip >= MAX_CLIPPED_DARK:
        lo = float(np.min(frames[0]))
        raise CalibrationError(
            f"the dark frames have no usable noise: {100 * clip:.1f} % of the values are at their minimum "
            f"({lo:g} DN above black): all-zero or noise-free frames, frames clipped at black with too "
            "little noise above it, or a wrong black level"
        )
    clipped = clip > CLIPPED_DARK
    lo_clip = min(float(np.min(f)) for f in frames)
    master = np.zeros(frames[0].shape, np.float64)
    for f in frames:
        master += f
    master /= n
    bad = bad_pixel_mask(master, frames)
    if mask is not None:
        bad |= mask
    good = ~bad
    if clipped:  # the centre of symmetric noise: the median, or the clip level when half or more is clipped
        pooled = [np.concatenate([f[:, :, c][good[:, :, c]] for f in frames]) for c in range(4)]
        bias = np.maximum([float(np.median(v)) for v in pooled], lo_clip)
    else:
        bias = np.array([float(master[:, :, c][good[:, :, c]].mean()) for c in range(4)])
    shuffle_rng = np.random.default_rng(0)  # fixed: only the read share of clipped row statistics uses it

    ys, row_means, frame_row, frame_std = [], [], [], []
    row_var_read, w_eff = [], []
    for f in frames:
        rs = []
        for c in range(4):
            g = good[:, :, c]
            cnt = g.sum(1).astype(np.float64)
            rows = cnt >= 2
            if clipped:
                off, rows, read_share = _rows_clipped(f[:, :, c], g, lo_clip, shuffle_rng)
                # rows are not removed: a row quantile of clipped values is too noisy an offset; the row
                # variance is taken out of the scales below instead
                y = (f[:, :, c] - bias[c]).astype(np.float32)
                unc = g & (f[:, :, c] > lo_clip + 0.5)
                y = _mirrored(y, unc, bias[c] <= lo_clip + 0.5)
                m = off[rows]
            else:
                x = f[:, :, c] - bias[c]
                m = np.where(g, x, 0.0).sum(1) / np.maximum(cnt, 1.0)
                d = x - m[:, None]
                s2 = np.where(g, d * d, 0.0).sum(1) / np.maximum(cnt - 1.0, 1.0)
                read_share = float(np.mean(s2[rows] / cnt[rows]))  # read noise left in a row mean
                y = d[g].astype(np.float32)
                m = m[rows]
            row_means.append(m)
            row_var_read.append(read_share)
            rs.append(math.sqrt(max(float(np.var(m, ddof=1)) - read_share, 0.0)))
            w_eff.append(float(np.mean(cnt[rows])))
            frame_std.append(float(np.std(y)))
            ys.append(y)
        frame_row.append(float(np.mean(rs)))
    y_all = np.concatenate(ys)
    if not np.ptp(y_all) > 0:
        raise CalibrationError("the dark frames have no noise (every row-removed value is the same)")
    if clipped and float(np.std(y_all)) < MIN_CLIPPED_NOISE:
        raise CalibrationError(
            f"the dark frames are clipped at black ({100 * clip:.0f} % of the values) and their read noise, "
            f"{float(np.std(y_all)):.2f} DN, is too small to measure from the half above the clip (need "
            f"{MIN_CLIPPED_NOISE:g} DN or more): leave this ISO out or keep the camera's black-level offset"
        )
    # row noise: pooled over frames and channels, the read-noise share of the row means removed
    var_m = float(np.mean([np.var(m, ddof=1) for m in row_means]))
    row_scale = math.sqrt(max(var_m - float(np.mean(row_var_read)), 0.0))

    def scale(slope: float, ref_var: float) -> float:
        if clipped:  # the values still hold the row noise: take its variance out
            return _sheppard(math.sqrt(max(slope * slope - row_scale**2 / ref_var, 0.0)), ref_var)
        # rows of n pixels lose a fraction 1/n of their variance when their mean is subtracted
        return _sheppard(slope * math.sqrt(np.mean(w_eff) / (np.mean(w_eff) - 1.0)), ref_var)

    pos, vals = _order_statistics(y_all, points)
    lam = _ppcc_lambda(pos, vals)
    slope_tl, r_tl = _probplot_fit(pos, vals, lam)
    var_tl = tukey_lambda_variance(lam)
    tl_scale = scale(slope_tl, var_tl)
    slope_g, r_g = _probplot_fit(pos, vals, None)
    g_scale = scale(slope_g, 1.0)
    frame_tl = []
    for y in ys:  # per-frame-channel Tukey scales at the pooled lam (diagnostics)
        s, _ = _probplot_fit(*_order_statistics(y, FRAME_POINTS), lam)
        frame_tl.append(scale(s, var_tl))
    frame_tl = [float(np.mean(frame_tl[i : i + 4])) for i in range(0, len(frame_tl), 4)]

    m_all = np.concatenate([m - m.mean() for m in row_means])
    _, r_row = _probplot_fit(*_order_statistics(m_all, points), None)
    read_total = float(np.sqrt(np.mean([np.var(f[good]) for f in frames])))
    res = DarkResult(
        n_frames=n,
        bias=[float(b) for b in bias],
        bad_pixels=int(bad.sum()),
        lam=lam,
        tl_scale=tl_scale,
        tl_r=float(r_tl),
        g_scale=g_scale,
        g_r=float(r_g),
        row_scale=row_scale,
        row_r=float(r_row),
        read_total=read_total,
        frame_tl_scale=frame_tl,
        frame_row_scale=frame_row,
        frame_std=[float(np.mean(frame_std[i : i + 4])) for i in range(0, len(frame_std), 4)],
    )
    return res, bad


def _sheppard(slope: float, ref_var: float) -> float:
    """Remove the 1/12 DN^2 of integer quantisation from a probability-plot scale (reference variance)."""
    s2 = slope * slope - QUANT_VAR / ref_var
    return float(math.sqrt(s2)) if s2 > 0 else float(abs(slope))


# ------------------------------------------------------------------------------------ cross-ISO fits


@dataclass
class LogLinearFit:
    """``ln s = slope ln K + bias``; ``sigma`` = RMS residual; standard errors of slope and bias."""

    slope: float
    bias: float
    sigma: float
    slope_se: float
    bias_se: float
    n: int

    def profile_entry(self) -> dict[str, float]:
        return {"slope": self.slope, "bias": self.bias, "sigma": self.sigma}


def fit_loglinear(k: np.ndarray, s: np.ndarray) -> LogLinearFit:
    """OLS of ``ln s`` on ``ln K`` (needs two or more distinct K)."""
    x = np.log(np.asarray(k, dtype=np.float64))
    y = np.log(np.asarray(s, dtype=np.float64))
    n = x.size
    if n < 2 or np.ptp(x) <= 0:
        raise CalibrationError(f"a cross-ISO fit needs at least 2 ISOs with different K, got {n}")
    xm = x.mean()
    sxx = float(np.sum((x - xm) ** 2))
    slope = float(np.sum((x - xm) * (y - y.mean())) / sxx)
    bias = float(y.mean() - slope * xm)
    resid = y - (slope * x + bias)
    sigma = float(np.sqrt(np.mean(resid**2)))
    s2 = float(np.sum(resid**2) / (n - 2)) if n > 2 else 0.0
    slope_se = math.sqrt(s2 / sxx)
    bias_se = math.sqrt(s2 * (1.0 / n + xm * xm / sxx))
    return LogLinearFit(slope, bias, sigma, slope_se, bias_se, n)


@dataclass
class IsoResult:
    """Everything measured at one ISO."""

    iso: float
    gain: GainResult
    dark: DarkResult
    n_dark_files: int = 0
    n_flat_files: int = 0


def build_profile(
    name: str,
    cfa_pattern: str,
    black_level: float | list[float],
    white_level: float,
    results: list[IsoResult],
    extra: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, LogLinearFit]]:
    """A camera profile dict in darkseg's JSON schema (plus a ``calibration`` block) and the fits."""
    from darkseg import __version__

    if len(results) < 2:
        raise CalibrationError(
            f"a profile needs at least 2 calibrated ISOs (got {len(results)}): the noise scales are "
            "fitted against ln K across ISOs"
        )
    res = sorted(results, key=lambda r: r.gain.K)
    ks = np.array([r.gain.K for r in res])
    fits = {
        "g_scale": fit_loglinear(ks, [r.dark.g_scale for r in res]),
        "G_scale": fit_loglinear(ks, [r.dark.tl_scale for r in res]),
        "R_scale": fit_loglinear(ks, [max(r.dark.row_scale, 1e-6) for r in res]),
    }
    blacks = np.atleast_1d(np.asarray(black_level, dtype=np.float64))
    profile: dict[str, Any] = {
        "name": name,
        "cfa_pattern": cfa_pattern,
        "black_level": float(blacks.mean()),
        "white_level": float(white_level),
        "Kmin": float(ks.min()),
        "Kmax": float(ks.max()),
        "G_shape": [r.dark.lam for r in res],
        "profiles": {"Profile-1": {k: f.profile_entry() for k, f in fits.items()}},
        "color_bias": [r.dark.bias for r in res],
        "source": f"darkseg calibrate {__version__} ({_dt.date.today().isoformat()})",
        "notes": (
            f"Calibrated from dark frames and flat fields at ISO {', '.join(f'{r.iso:g}' for r in res)}; "
            "PGRU model (Poisson shot noise with system gain K, Tukey-lambda read noise, row noise)."
        ),
    }
    calib: dict[str, Any] = {
        "tool": f"darkseg {__version__}",
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "black_level_per_channel": [float(b) for b in np.broadcast_to(blacks, (4,))]
        if blacks.size in (1, 4)
        else blacks.tolist(),
        "iso": [r.iso for r in res],
        "K": [r.gain.K for r in res],
        "fits": {k: asdict(f) for k, f in fits.items()},
        "per_iso": [
            {
                "iso": r.iso,
                "dark_files": r.n_dark_files,
                "flat_files": r.n_flat_files,
                "gain": r.gain.summary(),
                "dark": r.dark.summary(),
            }
            for r in res
        ],
    }
    if extra:
        calib.update(extra)
    profile["calibration"] = calib
    return profile, fits


# ---------------------------------------------------------------------------------------- simulation


def simulate_raw_frame(
    signal: float | np.ndarray,
    shape: tuple[int, int],
    K: float,
    lam: float,
    tl_scale: float,
    row_scale: float,
    rng: np.random.Generator,
    bias: np.ndarray | None = None,
    black_level: float = 512.0,
    white_level: float = 16383.0,
    cfa_pattern: str = "RGGB",
    prnu: np.ndarray | None = None,
    dtype=np.uint16,
) -> np.ndarray:
    """One RAW Bayer mosaic ``(H, W)`` (integer DN, black level added, clipped) from the PGRU model.

    ``signal``: expected DN above black, scalar, ``(4,)`` per channel or ``(H/2, W/2, 4)`` packed.
    ``prnu``: optional ``(H/2, W/2, 4)`` multiplicative response (1 = perfect). Shot noise with darkseg's
    Poisson sampler, read noise with its Tukey-lambda quantile function, one ``N(0, row_scale^2)`` per
    packed row and channel, the colour ``bias`` per channel, rounding to integers.
    """
    h2, w2 = shape[0] // 2, shape[1] // 2
    sig = np.broadcast_to(np.asarray(signal, dtype=np.float64), (h2, w2, 4))
    if prnu is not None:
        sig = sig * prnu
    z = poisson_numpy(np.maximum(sig, 0.0) / K, rng) * K
    u = np.maximum(rng.random(z.shape), 2.0**-40)
    z += tukey_lambda_ppf(np.minimum(u, 1 - 2.0**-40), lam) * tl_scale
    z += rng.standard_normal((h2, 1, 4)) * row_scale
    if bias is not None:
        z += np.asarray(bias, dtype=np.float64).reshape(1, 1, 4)
    z += black_level
    np.clip(np.rint(z), 0, white_level, out=z)
    return unpack_bayer(z, cfa_pattern).astype(dtype)


def dark_frame_summary(packed: np.ndarray) -> dict[str, np.ndarray]:
    """Per-channel statistics of a packed dark frame (DN above black): mean, std, row-mean std, and the
    1, 5, 25, 50, 75, 95, 99 % quantiles of the row-removed values (for comparing real and synthetic)."""
    p = packed.astype(np.float64)
    rows = p.mean(1)  # (h, 4)
    y = p - rows[:, None, :]
    q = np.percentile(y.reshape(-1, p.shape[2]), [1, 5, 25, 50, 75, 95, 99], axis=0)
    return {
        "mean": p.mean((0, 1)),
        "std": p.std((0, 1)),
        "row_std": rows.std(0),
        "quantiles": q,
    }
