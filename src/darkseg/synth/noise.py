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
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

from darkseg.synth.poisson import poisson_numpy, poisson_torch

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
]

_FIT_KEYS = ("g_scale", "G_scale", "R_scale")


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
        required = ("name", "Kmin", "Kmax", "G_shape", "profiles", "black_level", "white_level")
        missing = [k for k in required if k not in d]
        if missing:
            raise ValueError(f"{where}: camera profile lacks {missing}")
        for pname, prof in d["profiles"].items():
            for k in _FIT_KEYS:
                if k not in prof or not {"slope", "bias", "sigma"} <= set(prof[k]):
                    raise ValueError(f"{where}: profile {pname!r} needs {k} with slope/bias/sigma")
        bad = _non_finite_key(
            {
                k: d[k]
                for k in ("Kmin", "Kmax", "G_shape", "profiles", "black_level", "white_level", "color_bias")
                if k in d
            }
        )
        if bad is not None:
            raise ValueError(f"{where}: {bad} is not a finite number")
        if not d["G_shape"]:
            raise ValueError(f"{where}: G_shape is empty")
        if not 0 < float(d["Kmin"]) <= float(d["Kmax"]):
            raise ValueError(f"{where}: need 0 < Kmin <= Kmax")
        if float(d["white_level"]) <= float(d["black_level"]):
            raise ValueError(f"{where}: white_level must exceed black_level")
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


def _camera_dir():
    return resources.files("darkseg.synth") / "cameras"


def _non_finite_key(obj: Any, path: str = "") -> str | None:
    """Dotted path of the first number in nested dicts / lists that is NaN or infinite (JSON allows
    ``NaN`` and ``Infinity``), or None."""
    if isinstance(obj, dict):
        items = ((f"{path}.{k}" if path else str(k), v) for k, v in obj.items())
    elif isinstance(obj, (list, tuple)):
        items = ((f"{path}[{i}]", v) for i, v in enumerate(obj))
    else:
        is_bad = isinstance(obj, float) and not math.isfinite(obj)
        return path if is_bad else None
    return next((bad for key, value in items if (bad := _non_finite_key(value, key)) is not None), None)


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

    d = parse_json(text, where)  # malformed JSON and repeated keys are errors naming the file
    return CameraProfile.from_dict(d, where)


# --------------------------------------------------------------------------------------------- Tukey


def tukey_lambda_ppf(u, lam):
    """Quantile function of the standard Tukey-lambda distribution.

    ``(u**lam - (1-u)**lam) / lam``, with the ``lam -> 0`` limit ``ln(u / (1-u))`` (logistic) where
    ``lam == 0``. ``u`` in ``(0, 1)``; ``lam`` a scalar or broadcastable array/tensor. NumPy or torch.
    """
    if isinstance(u, torch.Tensor):
        lam_t = torch.as_tensor(lam, dtype=u.dtype, device=u.device)
        if lam_t.numel() == 1:  # scalar shape: cheaper scalar-exponent pow, one branch only
            lv = float(lam_t)
            if lv == 0.0:
                return torch.log(u) - torch.log1p(-u)
            return (u.pow(lv) - (1.0 - u).pow_(lv)) / lv
        zero = lam_t == 0
        safe = torch.where(zero, torch.ones_like(lam_t), lam_t)
        q = (u.pow(safe) - (1.0 - u).pow_(safe)) / safe
        if not bool(zero.any()):
            return q
        return torch.where(zero, torch.log(u) - torch.log1p(-u), q)
    if np.ndim(lam) == 0:  # scalar: one branch only
        lv = float(lam)
        if lv == 0.0:
            return np.log(u) - np.log1p(-u)
        return (u**lv - (1.0 - u) ** lv) / lv
    lam_a = np.asarray(lam, dtype=np.float64)
    zero = lam_a == 0
    safe = np.where(zero, 1.0, lam_a)
    with np.errstate(divide="ignore"):
        q = (u**safe - (1.0 - u) ** safe) / safe
        logistic = np.log(u) - np.log1p(-u)
    return np.where(zero, logistic, q)


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

    NumPy path: Python floats (``color_bias`` a ``(4,)`` array or ``None``, ``quant`` a float).
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

    def sample_params_numpy(self, rng: np.random.Generator) -> NoiseParams:
        """One image's parameters. Draw order: log K, lambda index, 3 normals, ratio, bias row, quant."""
        c = self.camera
        log_k = rng.uniform(math.log(c.Kmin), math.log(c.Kmax))
        lam = float(self._lams[rng.integers(len(self._lams))])
        eps = rng.standard_normal(3)
        lg, lG, lR = self._scales(log_k, eps)
        ratio = rng.uniform(*self.ratio_range)
        bias = None
        if c.color_bias is not None:
            row = rng.integers(len(c.color_bias))
            bias = np.asarray(c.color_bias[row], dtype=np.float64)
        quant = rng.uniform(-0.5, 0.5)
        return NoiseParams(
            float(math.exp(log_k)),
            float(ratio),
            lam,
            float(math.exp(lg)),
            float(math.exp(lG)),
            float(math.exp(lR)),
            float(quant),
            bias,
        )

    def sample_params_torch(
        self, generator: torch.Generator, batch: int, device: torch.device
    ) -> NoiseParams:
        """``batch`` images' parameters: ``(B,)`` float32 tensors on ``device``.

        Drawn on the generator's device in the order of :meth:`sample_params_numpy`, vectorised.
        """
        c = self.camera
        gd = generator.device
        f64 = {"generator": generator, "device": gd, "dtype": torch.float64}
        lo, hi = math.log(c.Kmin), math.log(c.Kmax)
        log_k = lo + (hi - lo) * torch.rand(batch, **f64)
        idx = torch.randint(len(self._lams), (batch,), generator=generator, device=gd)
        lam = torch.from_numpy(self._lams).to(gd)[idx]
        eps = torch.randn(3, batch, **f64)
        lg, lG, lR = self._scales(log_k, eps)
        ratio = self.ratio_range[0] + (self.ratio_range[1] - self.ratio_range[0]) * torch.rand(batch, **f64)
        bias = None
        if c.color_bias is not None:
            rows = torch.randint(len(c.color_bias), (batch,), generator=generator, device=gd)
            bias = torch.tensor(c.color_bias, dtype=torch.float64, device=gd)[rows]
        quant = torch.rand(batch, **f64) - 0.5

        def t(x):
            return None if x is None else x.to(device=device, dtype=torch.float32)

        return NoiseParams(
            t(log_k.exp()), t(ratio), t(lam), t(lg.exp()), t(lG.exp()), t(lR.exp()), t(quant), t(bias)
        )

    # ------------------------------------------------------------------------------- applying
    def apply_numpy(self, y: np.ndarray, p: NoiseParams, rng: np.random.Generator) -> np.ndarray:
        """Noisy version of one packed RAW ``y`` ``(h, w, C)`` in ``[0, 1]``; float32, clipped to ``[0, 1]``.

        Draw order: shot, read, row, quantisation.
        """
        comp = self.components
        scale = self.camera.saturation / p.ratio
        y = np.asarray(y)
        if "P" in comp:
            z = poisson_numpy(np.multiply(y, scale / p.K, dtype=np.float64), rng)
            z *= p.K
        else:
            z = np.multiply(y, scale, dtype=np.float64)
            if "p" in comp:
                z += rng.standard_normal(z.shape) * np.sqrt(np.maximum(p.K * z, 1e-10))
        if "g" in comp:
            z += rng.standard_normal(z.shape) * max(p.g_scale, 1e-10)
        elif "G" in comp:
            u = np.maximum(rng.random(z.shape, dtype=np.float32), np.float32(2.0**-25))
            read = tukey_lambda_ppf(u, np.float32(p.lam))
            read *= np.float32(p.G_scale)
            z += read
        if "B" in comp:
            z += np.asarray(p.color_bias, dtype=np.float64).reshape(1, 1, -1)
        if "R" in comp:
            z += rng.standard_normal((z.shape[0], 1, z.shape[2])) * p.R_scale
        if "U" in comp:
            z += rng.uniform(-0.5, 0.5, z.shape) if self.per_pixel_quantisation else p.quant
        z *= 1.0 / scale
        return np.clip(z, 0.0, 1.0, out=z).astype(np.float32)

    def apply_torch(self, y: torch.Tensor, p: NoiseParams, generator: torch.Generator) -> torch.Tensor:
        """Noisy version of a packed batch ``y`` ``(B, C, h, w)`` in ``[0, 1]``; float32 in ``[0, 1]``.

        ``generator`` must live on ``y``'s device.
        """
        comp = self.components
        bsz, ch, h, w = y.shape
        kw = {"generator": generator, "device": y.device, "dtype": torch.float32}

        def per_image(v):
            return v.to(device=y.device, dtype=torch.float32).view(bsz, 1, 1, 1)

        scale = self.camera.saturation / per_image(p.ratio)
        z = y.float() * scale
        if "P" in comp:
            k = per_image(p.K)
            z = poisson_torch(z / k, generator) * k
        elif "p" in comp:
            z = z + torch.randn(z.shape, **kw) * (per_image(p.K) * z).clamp_min(1e-10).sqrt()
        if "g" in comp:
            z = z + torch.randn(z.shape, **kw) * per_image(p.g_scale).clamp_min(1e-10)
        elif "G" in comp:
            u = torch.rand(z.shape, **kw).clamp_min(2.0**-25)
            z = z + tukey_lambda_ppf(u, per_image(p.lam)) * per_image(p.G_scale)
        if "B" in comp:
            z = z + p.color_bias.to(z).view(bsz, ch, 1, 1)
        if "R" in comp:
            z = z + torch.randn((bsz, ch, h, 1), **kw) * per_image(p.R_scale)
        if "U" in comp:
            if self.per_pixel_quantisation:
                z = z + (torch.rand(z.shape, **kw) - 0.5)
            else:
                z = z + per_image(p.quant)
        return (z / scale).clamp_(0.0, 1.0)


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
