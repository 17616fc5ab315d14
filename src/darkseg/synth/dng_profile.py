"""A Poisson-Gaussian camera profile from the DNG ``NoiseProfile`` tag (``darkseg calibrate --dng-profile``).

Phones and some converters write ``NoiseProfile`` (tag 51041): per colour plane a pair ``(S, O)`` with
``var(x) = S x + O`` for the signal ``x`` normalised to ``[0, 1]`` above black (``(raw - black) / (white -
black)``). In DN of the sensor (``R = white - black``): system gain ``K = S R`` and Gaussian read noise
``sigma_g = sqrt(O) R``. That is all the tag says: no Tukey shape, no row noise, no colour bias.

The profile written is in darkseg's schema: ``Kmin``/``Kmax`` the extreme K of the files, ``g_scale`` the
log-linear fit of ``sigma_g`` against K (one file: slope 0, the file's value); ``G_scale`` the same law
with the Tukey shape ``lam = 0.1349`` (the Tukey-lambda closest to a normal distribution) scaled to the
same variance, ``R_scale`` negligible (1e-6 DN). So ``--noise-model PG`` reproduces the tag exactly and
``PGRU`` is the same model with a near-Gaussian read noise and no row noise.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from darkseg.raw.tiff_tags import TAG, read_tiff_info
from darkseg.synth.calibrate import fit_loglinear
from darkseg.synth.noise import K_RANGE, tukey_lambda_variance

__all__ = ["NEAR_GAUSSIAN_LAMBDA", "read_noise_profile", "profile_from_dngs"]

NEAR_GAUSSIAN_LAMBDA = 0.1349
_CFA_LETTERS = {0: "R", 1: "G", 2: "B"}


def read_noise_profile(path: str | os.PathLike) -> dict[str, Any]:
    """``K``, ``sigma_g`` (DN), ISO, levels, CFA and the raw ``(S, O)`` pairs of one DNG."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    info = read_tiff_info(path)
    if not info.ifds:
        raise ValueError(f"{path}: not a TIFF/DNG file")
    if not info.noise_profile:
        raise ValueError(f"{path}: no NoiseProfile tag (51041); calibrate from dark and flat frames instead")
    npf = info.noise_profile
    if not all(math.isfinite(v) for v in npf):
        shown = ", ".join(f"{v:g}" for v in npf[:8]) + (", ..." if len(npf) > 8 else "")
        raise ValueError(f"{path}: NoiseProfile holds a value that is not a finite number ({shown})")
    if len(npf) < 2 or len(npf) % 2:
        raise ValueError(f"{path}: NoiseProfile has {len(npf)} values, expected pairs (S, O)")
    pairs = [(npf[i], npf[i + 1]) for i in range(0, len(npf), 2)]
    if info.white_level is None:
        raise ValueError(f"{path}: no WhiteLevel tag; cannot turn the noise profile into DN")
    black = float(np.mean(info.black_level)) if info.black_level else 0.0
    rng = info.white_level - black
    if rng <= 0:
        raise ValueError(f"{path}: white level {info.white_level} <= black level {black}")
    for i, (si, oi) in enumerate(pairs):
        _check_pair(path, i, float(si), float(oi), rng)
    s = float(np.mean([p[0] for p in pairs]))
    o = float(np.mean([p[1] for p in pairs]))
    pattern = "RGGB"
    for ifd in info.ifds:
        cfa = ifd.get(TAG["CFAPattern"])
        if cfa and len(cfa) == 4 and all(int(v) in _CFA_LETTERS for v in cfa):
            pattern = "".join(_CFA_LETTERS[int(v)] for v in cfa)
            break
    return {
        "path": str(path),
        "iso": info.iso,
        "camera": info.camera,
        "black_level": black,
        "white_level": float(info.white_level),
        "cfa_pattern": pattern,
        "pairs": pairs,
        "K": s * rng,
        "sigma_g": math.sqrt(o) * rng,
    }


def _check_pair(path: Path, i: int, s: float, o: float, rng: float) -> None:
    """Refuse a NoiseProfile pair that is not physical: ``K = S (white - black)`` must lie in
    :data:`~darkseg.synth.noise.K_RANGE` DN/e- and ``O`` in ``[0, 1]`` (a read noise of at most the whole
    range); NaN and infinity are refused too. Names the DNG, the pair and the range."""
    where = f"{path}: NoiseProfile pair {i}"
    if not (math.isfinite(s) and math.isfinite(o)):
        raise ValueError(f"{where}: S = {s}, O = {o} is not a finite number")
    k = s * rng
    lo, hi = K_RANGE
    if not lo <= k <= hi:
        raise ValueError(
            f"{where}: S = {s:.6g} gives the gain K = S x (white - black) = {k:.6g} DN/e-, outside "
            f"[{lo:g}, {hi:g}] DN/e-"
        )
    if not 0.0 <= o <= 1.0:
        raise ValueError(f"{where}: O = {o:.6g} is outside [0, 1] (read noise variance, normalised)")


def profile_from_dngs(paths, name: str) -> tuple[dict[str, Any], list[str]]:
    """The profile dict from one or more DNGs (one per ISO; same-ISO files are averaged) and report lines."""
    from darkseg import __version__

    recs = [read_noise_profile(p) for p in paths]
    cams = {r["camera"] for r in recs if r["camera"]}
    if len(cams) > 1:
        raise ValueError(f"the DNGs come from different cameras: {sorted(cams)}")
    by_iso: dict[Any, list[dict]] = {}
    for r in recs:
        by_iso.setdefault(r["iso"] if r["iso"] is not None else r["path"], []).append(r)
    rows = []
    for rs in by_iso.values():
        rows.append(
            {
                "iso": rs[0]["iso"],
                "files": [r["path"] for r in rs],
                "K": float(np.mean([r["K"] for r in rs])),
                "g_scale": float(np.mean([r["sigma_g"] for r in rs])),
            }
        )
    rows.sort(key=lambda r: r["K"])
    ks = np.array([r["K"] for r in rows])
    gs = np.array([r["g_scale"] for r in rows])
    if len(rows) >= 2 and np.ptp(ks) > 0:
        f = fit_loglinear(ks, gs)
        g = {"slope": f.slope, "bias": f.bias, "sigma": f.sigma}
    else:
        g = {"slope": 0.0, "bias": float(math.log(gs.mean())), "sigma": 0.0}
    tl_shift = -0.5 * math.log(tukey_lambda_variance(NEAR_GAUSSIAN_LAMBDA))
    ref = recs[0]
    profile = {
        "name": name,
        "cfa_pattern": ref["cfa_pattern"],
        "black_level": ref["black_level"],
        "white_level": ref["white_level"],
        "Kmin": float(ks.min()),
        "Kmax": float(ks.max()),
        "G_shape": [NEAR_GAUSSIAN_LAMBDA],
        "profiles": {
            "Profile-1": {
                "g_scale": g,
                "G_scale": {**g, "bias": g["bias"] + tl_shift},
                "R_scale": {"slope": 0.0, "bias": math.log(1e-6), "sigma": 0.0},
            }
        },
        "color_bias": None,
        "source": f"darkseg calibrate --dng-profile {__version__} ({_dt.date.today().isoformat()})",
        "notes": (
            "Poisson-Gaussian only, from the DNG NoiseProfile tag: no Tukey shape, row noise or colour bias "
            "were measured (G_scale = the Gaussian read noise as a near-Gaussian Tukey lambda 0.1349, "
            "R_scale negligible). Use --noise-model PG; calibrate from dark and flat frames for the full "
            "PGRU model."
        ),
        "calibration": {
            "method": "dng-noise-profile",
            "tool": f"darkseg {__version__}",
            "camera_model": ref["camera"],
            "per_iso": rows,
        },
    }
    lines = ["Poisson-Gaussian profile from the DNG NoiseProfile tag (no Tukey-lambda, row noise or bias):"]
    for r in rows:
        iso = f"ISO {r['iso']:g}" if r["iso"] else "ISO ?"
        n = len(r["files"])
        lines.append(f"  {iso:>10}: K = {r['K']:.4g} DN/e-, sigma_g = {r['g_scale']:.4g} DN ({n} file(s))")
    if len(rows) < 2:
        lines.append("  one ISO only: Kmin = Kmax, the read noise does not vary with K")
    return profile, lines
