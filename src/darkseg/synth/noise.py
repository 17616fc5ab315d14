"""Physics-based low-light noise model (ELD / LIS "PGRU"; docs/synthesis.md) and camera profiles.

Signal path for a packed RAW ``y`` in ``[0, 1]`` (normalised by ``white - black``), per image::

    y_dn = y * S / ratio                      S = white_level - black_level (DN), ratio ~ U(ratio_range)
    P:  z = K * Poisson(y_dn / K)             shot noise, K = system gain (DN / e-)
    p:  z = y_dn + N(0, K * y_dn)             Gaussian approximation of shot noise
    g:  z += N(0, 1) * g_scale                Gaussian read noise       (wins over G)
    G:  z += TukeyLambda(lam) * G_scale       Tukey-lambda read noise (lam = 0: logistic)
    B:  z += color_bias[row]                  per-channel colour bias (needs the profile's table)
    R:  z += N(0, 1)[row, channel] * R_scale  row noise: one value per packed row and channel
    U:  z += U(-0.5, 0.5)                     quantisation: one scalar per image (LIS), or per pixel
    out = clip(z * ratio / S, 0, 1)

Parameter sampler (per image): ``ln K ~ U(ln Kmin, ln Kmax)``; ``lam`` uniform from the profile's
``G_shape`` list; ``ln sigma = slope * ln K + bias + sigma_fit * N(0, 1)`` for ``g_scale``, ``G_scale``,
``R_scale`` (three independent normals); ``ratio ~ U(ratio_range)``.

Named models: ``"PGRU"`` = components ``PGRU`` (the LIS model); ``"PG"`` = Poisson shot + *Gaussian*
read noise (components ``Pg``: the classic Poisson-Gaussian model; note that in the original letter
code ``"PG"`` would mean Poisson + Tukey); ``"none"`` = no noise. Any component string is accepted by
:class:`NoiseModel` directly.
"""

from __future__ import annotations

import math
import numbers
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

from darkseg.errors import short_repr
from darkseg.synth.backend import backend_of, draws

__all__ = [
    "CameraProfile",
    "load_camera",
    "available_cameras",
    "NoiseParams",
    "NoiseModel",
    "PGNoise",
    "PGRUNoise",
    "NAMED_MODELS",
    "build_noise_model",
    "tukey_lambda_ppf",
    "tukey_lambda_variance",
    "K_RANGE",
    "LAMBDA_RANGE",
    "SLOPE_RANGE",
    "FIT_SIGMA_RANGE",
    "MIN_READ_SCALE",
    "MAX_WHITE_LEVEL",
]

_FIT_KEYS = ("g_scale", "G_scale", "R_scale")

# Physical ranges of a camera profile's parameters (docs/synthesis.md, "Camera profiles"); a value
# outside is refused naming the file, the key and the range.
#: System gain K (DN per electron): 0.001 is a 10-bit sensor with a 1M-electron well, 1000 a 16-bit
#: sensor whose single electron spans a sixty-fifth of the range; real cameras lie within 0.05..100.
K_RANGE = (1e-3, 1e3)
#: Tukey-lambda shape (``G_shape``): the variance is infinite at -0.5; real sensors lie in -0.3..0.2.
LAMBDA_RANGE = (-0.5, 0.5)
#: Log-linear fits ``ln scale = slope ln K + bias + sigma N(0, 1)``: slope and the spread ``sigma``.
SLOPE_RANGE = (-5.0, 5.0)
FIT_SIGMA_RANGE = (0.0, 2.0)
#: Smallest read-noise scale (DN) a fit may give at Kmin or Kmax; the largest is white - black.
MIN_READ_SCALE = 1e-9
#: Largest white level (DN): 24-bit integers, all exact in float32.
MAX_WHITE_LEVEL = float(2**24)


@dataclass(frozen=True)
class CameraProfile:
    """Calibrated noise constants of one camera (a ``synth/cameras/<name>.json`` file).

    ``Kmin``/``Kmax``: system-gain range (DN / e-). ``G_shape``: Tukey-lambda shapes, one per calibrated
    ISO. ``profiles``: ``{name: {"g_scale"|"G_scale"|"R_scale": {"slope", "bias", "sigma"}}}`` log-linear
    fits ``ln sigma = slope ln K + bias + sigma N(0,1)``, sigma in DN. ``color_bias``: ``(N, 4)`` rows
    (R, G1, B, G2) or ``None`` where not available. Levels in DN of the sensor's ADC.
    """

    name: str
    Kmin: float
    Kmax: float
    G_shape: tuple[float, ...]
    profiles: dict[str, dict[str, dict[str, float]]]
    black_level: float
    white_level: float
    cfa_pattern: str = "RGGB"
    color_bias: tuple[tuple[float, ...], ...] | None = None
    source: str = ""
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def saturation(self) -> float:
        """``white_level - black_level`` in DN (15871 for the Canon EOS 5D Mark IV)."""
        return float(self.white_level - self.black_level)

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "<dict>") -> CameraProfile:
        """Build from a profile's JSON data; every value is checked against its physical range.

        Raises:
            ValueError: naming ``where``, the key and the range of a missing, mistyped, non-finite or
                out-of-range value (limits: :data:`K_RANGE`, :data:`LAMBDA_RANGE`, ...).
        """
        _check_profile(d, where)
        known = {f for f in cls.__dataclass_fields__ if f != "extra"}
        cb = d.get("color_bias")
        return cls(
            name=str(d["name"]),
            Kmin=float(d["Kmin"]),
            Kmax=float(d["Kmax"]),
            G_shape=tuple(float(v) for v in d["G_shape"]),
            profiles={
                p: {k: {kk: float(vv) for kk, vv in v.items()} for k, v in pr.items()}
                for p, pr in d["profiles"].items()
            },
            black_level=float(d["black_level"]),
            white_level=float(d["white_level"]),
            cfa_pattern=str(d.get("cfa_pattern", "RGGB")),
            color_bias=None if cb is None else tuple(tuple(float(x) for x in row) for row in cb),
            source=str(d.get("source", "")),
            notes=str(d.get("notes", "")),
            extra={k: v for k, v in d.items() if k not in known},
        )


def _in_range(
    value: Any, lo: float, hi: float, key: str, where: str, unit: str = "", open_lo: bool = False
) -> float:
    """``value`` as a float within ``[lo, hi]`` (``(lo, hi]`` with ``open_lo``), else a ValueError naming
    ``where``, ``key`` and the range."""
    if not (isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)):
        raise ValueError(f"{where}: {key} is not a finite number (got {short_repr(value)})")
    if not ((lo < value if open_lo else lo <= value) and value <= hi):
        unit = f" {unit}" if unit else ""
        bracket = "(" if open_lo else "["
        raise ValueError(
            f"{where}: {key} = {short_repr(value)} is outside its range {bracket}{lo:g}, {hi:g}]{unit}"
        )
    return float(value)


def _check_profile(d: Any, where: str) -> None:
    """Refuse a camera profile whose keys are missing or whose values are not physical (see the ranges
    above ``CameraProfile``)."""
    if not isinstance(d, dict):
        raise ValueError(f"{where}: a camera profile must be a JSON object, got {type(d).__name__}")
    required = ("name", "Kmin", "Kmax", "G_shape", "profiles", "black_level", "white_level")
    missing = [k for k in required if k not in d]
    if missing:
        raise ValueError(f"{where}: camera profile lacks {missing}")
    white = _in_range(d["white_level"], 1.0, MAX_WHITE_LEVEL, "white_level", where, "DN")
    black = _in_range(d["black_level"], 0.0, white, "black_level", where, "DN")
    if white <= black:
        raise ValueError(f"{where}: white_level must exceed black_level")
    k_min = _in_range(d["Kmin"], *K_RANGE, "Kmin", where, "DN/e-")
    k_max = _in_range(d["Kmax"], *K_RANGE, "Kmax", where, "DN/e-")
    if k_min > k_max:
        raise ValueError(f"{where}: need Kmin <= Kmax (got {k_min:g} > {k_max:g})")
    shapes = d["G_shape"]
    if not isinstance(shapes, (list, tuple)) or not shapes:
        raise ValueError(f"{where}: G_shape must be a non-empty list of Tukey-lambda shapes")
    for i, lam in enumerate(shapes):
        _in_range(lam, *LAMBDA_RANGE, f"G_shape[{i}]", where, open_lo=True)
    if not isinstance(d["profiles"], dict) or not d["profiles"]:
        raise ValueError(f"{where}: profiles must be a non-empty object of named fits")
    for pname, prof in d["profiles"].items():
        for k in _FIT_KEYS:
            fit = prof.get(k) if isinstance(prof, dict) else None
            if not isinstance(fit, dict) or not {"slope", "bias", "sigma"} <= set(fit):
                raise ValueError(f"{where}: profile {short_repr(pname)} needs {k} with slope/bias/sigma")
            at = f"profiles.{str(pname)[:80]}.{k}"
            slope = _in_range(fit["slope"], *SLOPE_RANGE, f"{at}.slope", where)
            bias = _in_range(fit["bias"], -1e3, 1e3, f"{at}.bias", where)
            _in_range(fit["sigma"], *FIT_SIGMA_RANGE, f"{at}.sigma", where)
            for name, kk in (("Kmin", k_min), ("Kmax", k_max)):
                scale = math.exp(min(slope * math.log(kk) + bias, 700.0))
                _in_range(
                    scale,
                    MIN_READ_SCALE,
                    white - black,
                    f"{at} at {name} (exp(slope ln K + bias))",
                    where,
                    "DN",
                )
    cb = d.get("color_bias")
    if cb is not None:
        if not isinstance(cb, (list, tuple)) or not cb:
            raise ValueError(f"{where}: color_bias must be null or a non-empty list of [R, G1, B, G2] rows")
        for i, row in enumerate(cb):
            if not isinstance(row, (list, tuple)) or len(row) != 4:
                raise ValueError(f"{where}: color_bias[{i}] must be 4 numbers [R, G1, B, G2]")
            for j, v in enumerate(row):
                _in_range(v, -(white - black), white - black, f"color_bias[{i}][{j}]", where, "DN")


def _camera_dir():
    return resources.files("darkseg.synth") / "cameras"


def available_cameras() -> list[str]:
    """Names of the camera profiles shipped with the package (sorted)."""
    return sorted(p.name[:-5] for p in _camera_dir().iterdir() if p.name.endswith(".json"))


def load_camera(name_or_path: str | os.PathLike | CameraProfile) -> CameraProfile:
    """Load a shipped profile by name (e.g. ``"CanonEOS5D4"``) or any profile JSON file by path."""
    if isinstance(name_or_path, CameraProfile):
        return name_or_path
    s = str(name_or_path)
    if s.endswith(".json") or os.sep in s or Path(s).is_file():
        path = Path(s)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: camera profile file not found")
        text = path.read_text(encoding="utf-8")
        where = str(path)
    else:
        res = _camera_dir() / f"{s}.json"
        if not res.is_file():
            raise ValueError(f"unknown camera {s!r}; available: {', '.join(available_cameras())}")
        text = res.read_text(encoding="utf-8")
        where = f"darkseg/synth/cameras/{s}.json"
    from darkseg.utils.io import parse_json

    d = parse_json(text, where, max_depth=16)  # malformed, repeated keys, too deep: errors naming the file
    return CameraProfile.from_dict(d, where)


# --------------------------------------------------------------------------------------------- Tukey


def _tukey_power_form(u, lam):
    """``(u**lam - (1-u)**lam) / lam`` (``lam != 0``), with two image-sized temporaries."""
    q, v = u**lam, 1.0 - u
    v **= lam
    q -= v
    q /= lam
    return q


def tukey_lambda_ppf(u, lam):
    """Quantile function of the standard Tukey-lambda distribution.

    ``(u**lam - (1-u)**lam) / lam``, with the ``lam -> 0`` limit ``ln(u / (1-u))`` (logistic) where
    ``lam == 0``. ``u`` in ``(0, 1)``; ``lam`` a scalar or broadcastable array/tensor. NumPy or torch.
    """
    B = backend_of(u)
    if B.is_scalar(lam):  # one shape for all: scalar-exponent pow, one branch only
        lam = float(lam)
        return B.log(u) - B.log1p(-u) if lam == 0.0 else _tukey_power_form(u, lam)
    lam = B.as_like(lam, u)
    zero = lam == 0
    with B.errstate(divide="ignore"):
        q = _tukey_power_form(u, B.where(zero, 1.0, lam))
        return B.where(zero, B.log(u) - B.log1p(-u), q) if B.any(zero) else q


def tukey_lambda_variance(lam: float) -> float:
    """Variance of the standard Tukey-lambda distribution (infinite for ``lam <= -0.5``)."""
    if lam == 0:
        return math.pi**2 / 3.0
    if lam <= -0.5:
        return math.inf
    return (
        2.0
        / lam**2
        * (1.0 / (1.0 + 2.0 * lam) - math.exp(2 * math.lgamma(lam + 1) - math.lgamma(2 * lam + 2)))
    )


# ----------------------------------------------------------------------------------------- the model


@dataclass
class NoiseParams:
    """Per-image noise parameters.

    NumPy path: Python floats (``color_bias`` a ``(4,)`` float32 array or ``None``, ``quant`` a float).
    torch path: ``(B,)`` float32 tensors (``color_bias`` ``(B, 4)`` or ``None``).
    ``K`` DN/e-, ``ratio`` dimensionless, ``lam`` Tukey shape, ``*_scale`` in DN, ``quant`` the per-image
    quantisation offset in DN (unused with per-pixel quantisation).
    """

    K: Any
    ratio: Any
    lam: Any
    g_scale: Any
    G_scale: Any
    R_scale: Any
    quant: Any
    color_bias: Any = None


_VALID = set("PpgGBRU")


class NoiseModel:
    """Component noise model on packed RAW (see the module docstring for the maths).

    Args:
        camera: profile name, JSON path or :class:`CameraProfile`.
        components: letters from ``P p g G B R U`` (``""`` = identity up to float rounding).
        ratio_range: exposure-ratio range ``(lo, hi)``, ``1 <= lo <= hi``.
        profile: which fit of the camera (``"Profile-1"``; NikonD850 also has ``"Profile-2"``).
        per_pixel_quantisation: ``U`` draws one offset per pixel instead of one per image
            (docs/decisions.md D4).
    """

    components: str = ""

    def __init__(
        self,
        camera: str | os.PathLike | CameraProfile = "CanonEOS5D4",
        components: str | None = None,
        ratio_range: tuple[float, float] = (10.0, 100.0),
        profile: str = "Profile-1",
        per_pixel_quantisation: bool = False,
    ) -> None:
        self.camera = load_camera(camera)
        if components is not None:
            self.components = components
        bad = set(self.components) - _VALID
        if bad:
            raise ValueError(f"unknown noise component(s) {sorted(bad)}; valid letters: P p g G B R U")
        if profile not in self.camera.profiles:
            raise ValueError(
                f"camera {self.camera.name} has no {profile!r}; has {list(self.camera.profiles)}"
            )
        if "B" in self.components and self.camera.color_bias is None:
            raise ValueError(f"camera {self.camera.name} has no color_bias table: component 'B' unavailable")
        lo, hi = (float(v) for v in ratio_range)
        if not 0 < lo <= hi:
            raise ValueError(f"ratio_range must satisfy 0 < lo <= hi, got {ratio_range}")
        self.ratio_range = (lo, hi)
        self.fits = self.camera.profiles[profile]
        self.per_pixel_quantisation = bool(per_pixel_quantisation)
        self._lams = np.asarray(self.camera.G_shape, dtype=np.float64)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(camera={self.camera.name!r}, components={self.components!r}, "
            f"ratio_range={self.ratio_range}, per_pixel_quantisation={self.per_pixel_quantisation})"
        )

    # -------------------------------------------------------------------------------- sampling
    def _scales(self, log_k, eps):
        out = []
        for k, e in zip(_FIT_KEYS, eps):
            f = self.fits[k]
            out.append(f["slope"] * log_k + f["bias"] + f["sigma"] * e)
        return out

    def sample_params(
        self,
        rng: np.random.Generator | torch.Generator,
        batch: int | None = None,
        device: torch.device | str | None = None,
    ) -> NoiseParams:
        """Noise parameters of one image (``numpy.random.Generator``: Python floats) or of ``batch``
        images (``torch.Generator``: ``(B,)`` float32 tensors on ``device``, default the generator's;
        drawn on the generator's device).

        Draw order: log K, lambda index, 3 normals, ratio, bias row, quant (vectorised over the batch).
        """
        c, D = self.camera, draws(rng, batch, device)
        log_k = D.uniform(math.log(c.Kmin), math.log(c.Kmax), D.batch)
        lam = D.table(self._lams)[D.integers(len(self._lams), D.batch)]
        eps = D.normal((3, *D.batch))
        lg, lG, lR = self._scales(log_k, eps)
        ratio = D.uniform(*self.ratio_range, D.batch)
        bias = None
        if c.color_bias is not None:
            bias = D.finish(D.table(c.color_bias)[D.integers(len(c.color_bias), D.batch)])
        quant = D.uniform(-0.5, 0.5, D.batch)
        exp = D.backend.exp
        return NoiseParams(
            *(D.finish(v) for v in (exp(log_k), ratio, lam, exp(lg), exp(lG), exp(lR), quant)), bias
        )

    # ------------------------------------------------------------------------------- applying
    def apply(self, y, p: NoiseParams, rng: np.random.Generator | torch.Generator):
        """Noisy version of packed RAW ``y`` in ``[0, 1]``: float32, clipped to ``[0, 1]``.

        NumPy: one image ``(h, w, C)``, :meth:`sample_params` of a ``numpy.random.Generator``, noise
        accumulated in float64. torch: a batch ``(B, C, h, w)``, batched parameters, a
        ``torch.Generator`` on ``y``'s device, float32. Draw order: shot, read, row, quantisation.
        """
        comp, B, D = self.components, backend_of(y), draws(rng)
        scale = self.camera.saturation / B.per_image(p.ratio)
        if "P" in comp:
            k = B.per_image(p.K)
            z = D.poisson(B.mul_wide(y, scale / k))
            z *= k
        else:
            z = B.mul_wide(y, scale)
            if "p" in comp:
                z += D.normal(z.shape, z.dtype) * B.sqrt(B.clamp_min(B.per_image(p.K) * z, 1e-10))
        if "g" in comp:
            z += D.normal(z.shape, z.dtype) * B.per_image(B.clamp_min(p.g_scale, 1e-10))
        elif "G" in comp:
            u = B.clamp_min_(D.random(z.shape, B.f32), 2.0**-25)
            read = tukey_lambda_ppf(u, B.per_image(p.lam))
            read *= B.per_image(p.G_scale)
            z += read
        if "B" in comp:
            z += B.per_channel(p.color_bias)
        if "R" in comp:
            B.add_rows_(z, D.normal(B.row_shape(z), z.dtype) * B.per_image(p.R_scale))
        if "U" in comp:
            z += (
                D.uniform(-0.5, 0.5, z.shape, z.dtype)
                if self.per_pixel_quantisation
                else B.per_image(p.quant)
            )
        z *= 1.0 / scale
        return B.clip_to_f32(z, 0.0, 1.0)


class PGNoise(NoiseModel):
    """Poisson shot + Gaussian read noise (``Pg``) with the camera's ``g_scale`` fit."""

    components = "Pg"


class PGRUNoise(NoiseModel):
    """The LIS physics-based model: Poisson shot, Tukey-lambda read, row noise, quantisation (``PGRU``)."""

    components = "PGRU"


class NoNoise(NoiseModel):
    """No noise (clean path only; output = input clipped to ``[0, 1]``)."""

    components = ""


NAMED_MODELS: dict[str, type[NoiseModel]] = {"PG": PGNoise, "PGRU": PGRUNoise, "none": NoNoise}


def build_noise_model(
    name: str, camera: str | os.PathLike | CameraProfile = "CanonEOS5D4", **kwargs
) -> NoiseModel:
    """A named model (``"PG"``, ``"PGRU"``, ``"none"``) for ``camera``; kwargs go to :class:`NoiseModel`."""
    if name not in NAMED_MODELS:
        raise ValueError(f"unknown noise model {name!r}; expected one of {sorted(NAMED_MODELS)}")
    return NAMED_MODELS[name](camera, **kwargs)
