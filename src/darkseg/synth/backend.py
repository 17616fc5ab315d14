"""Array back-ends of the synthesis maths: the primitives that NumPy and torch spell differently.

The formulas of :mod:`darkseg.synth.noise` and :mod:`darkseg.synth.unprocess` are written once, against
a back-end object ``B`` (array operations, chosen by :func:`backend_of` from the image) and a draw
object ``D`` (random draws, chosen by :func:`draws` from the generator). There is no maths here: each
primitive is one call of its library, so that the NumPy path (what ``darkseg synth`` runs on one CPU
thread, where NumPy's float32 transcendental kernels are about 2x faster than torch's) and the torch
path (training, on the GPU) evaluate the same expressions.

Layouts (what the layout primitives assume):

* NumPy: one image ``(H, W, C)``; per-image parameters are Python floats (matrices ``(3, 3)``, rows
  ``(C,)``); noise accumulates in float64 (what :func:`~darkseg.synth.poisson.poisson_numpy` works in).
* torch: a batch ``(B, C, H, W)``; per-image parameters are ``(B,)`` tensors (``(B, 3, 3)``,
  ``(B, C)``); noise accumulates in float32.

``from_planar`` turns channel-first planes ``(..., C, H, W)`` into the image layout (a transposed view
for NumPy, the identity for torch); ``(...)`` is ``()`` for NumPy and ``(B,)`` for torch.
"""

from __future__ import annotations

import math
import sys
from typing import Any

import numpy as np
import torch

from darkseg.synth.poisson import poisson_numpy, poisson_torch

__all__ = [
    "NumpyBackend",
    "TorchBackend",
    "NumpyDraws",
    "TorchDraws",
    "backend_of",
    "draws",
    "uniform_f32",
]


class NumpyBackend:
    """NumPy primitives; one image ``(H, W, C)``, per-image parameters Python floats."""

    f32 = np.float32
    errstate = staticmethod(np.errstate)
    inv = staticmethod(np.linalg.inv)

    # ------------------------------------------------------------------ conversion and creation
    @staticmethod
    def as_float(x: Any) -> np.ndarray:
        """``x`` as an array; float dtypes kept, others become float32."""
        a = np.asarray(x)
        return a if a.dtype.kind == "f" else a.astype(np.float32)

    @staticmethod
    def to_f32(x: Any) -> np.ndarray:
        return np.asarray(x, dtype=np.float32)

    @staticmethod
    def as_like(v: Any, like: np.ndarray) -> np.ndarray:
        """``v`` as an array of ``like``'s dtype."""
        return np.asarray(v, dtype=like.dtype)

    @staticmethod
    def mul_wide(y: Any, s: Any) -> np.ndarray:
        """``y * s`` in the noise accumulation dtype, a new C-contiguous array (whatever ``y``'s layout:
        the noise is drawn in C order, so the shot-noise sampler needs no reordering copy)."""
        return np.multiply(y, s, dtype=np.float64, order="C")

    @staticmethod
    def clip_to_f32(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
        """``x`` clipped to ``[lo, hi]`` (in ``x``'s dtype), as a new float32 array (one pass)."""
        return np.clip(x, lo, hi, out=np.empty(x.shape, dtype=np.float32))

    @staticmethod
    def is_scalar(v: Any) -> bool:
        return np.ndim(v) == 0

    @staticmethod
    def any(x: np.ndarray) -> bool:
        return bool(np.any(x))

    # --------------------------------------------------------------------------- elementwise
    @staticmethod
    def clip(x: Any, lo: float, hi: float) -> np.ndarray:
        return np.clip(x, lo, hi)

    @staticmethod
    def clip_(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
        return np.clip(x, lo, hi, out=x)

    @staticmethod
    def clamp_min(x: Any, lo: float) -> Any:
        return np.maximum(x, lo)

    @staticmethod
    def clamp_min_(x: np.ndarray, lo: float) -> np.ndarray:
        return np.maximum(x, lo, out=x)

    @staticmethod
    def maximum_(x: np.ndarray, y: Any) -> np.ndarray:
        return np.maximum(x, y, out=x)

    @staticmethod
    def asin_(x: np.ndarray) -> np.ndarray:
        return np.arcsin(x, out=x)

    @staticmethod
    def sin_(x: np.ndarray) -> np.ndarray:
        return np.sin(x, out=x)

    @staticmethod
    def log_(x: np.ndarray) -> np.ndarray:
        return np.log(x, out=x)

    @staticmethod
    def exp_(x: np.ndarray) -> np.ndarray:
        return np.exp(x, out=x)

    @staticmethod
    def rsub_(c: float, x: np.ndarray) -> np.ndarray:
        """``c - x`` into ``x``."""
        return np.subtract(c, x, out=x)

    # ---------------------------------------------------------------------- shape and reduce
    @staticmethod
    def stack(xs: list, axis: int) -> np.ndarray:
        return np.stack(xs, axis=axis)

    @staticmethod
    def sum(x: np.ndarray, axis: int) -> np.ndarray:
        return x.sum(axis=axis, keepdims=True)

    @staticmethod
    def mean(x: np.ndarray, axis: int) -> np.ndarray:
        return x.mean(axis=axis, keepdims=True)

    # -------------------------------------------------------------------------------- layout
    @staticmethod
    def hw(x: np.ndarray) -> tuple[int, int]:
        return x.shape[0], x.shape[1]

    @staticmethod
    def per_image(v: Any) -> Any:
        """A per-image parameter, broadcastable against an image."""
        return float(v)

    @staticmethod
    def per_channel(v: Any) -> np.ndarray:
        """Per-image ``(C,)`` rows of values, broadcastable against an image."""
        return np.asarray(v)

    @staticmethod
    def channels(vals: list, like: np.ndarray) -> np.ndarray:
        """Per-image scalars, one per channel, as a float32 vector broadcastable against an image."""
        return np.array(vals, dtype=np.float32)

    @staticmethod
    def channel_mean(x: np.ndarray) -> np.ndarray:
        return x.mean(axis=-1, keepdims=True)

    @staticmethod
    def colour_matrix(m: Any, x: np.ndarray) -> np.ndarray:
        """Per-image ``(3, 3)`` matrix ``m`` applied to every pixel's channel vector."""
        return x @ np.asarray(m, dtype=np.float32).T

    @staticmethod
    def row_shape(x: np.ndarray) -> tuple[int, ...]:
        """Shape of one value per image row and channel."""
        return (x.shape[0], 1, x.shape[2])

    @staticmethod
    def add_rows_(x: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """``x += rows`` in place, ``rows`` of :meth:`row_shape`: on a contiguous ``x`` as rows of
        ``W * C`` values (a broadcast over the middle axis runs an inner loop of only ``C`` elements,
        3x slower; the sums are the same)."""
        if not x.flags.c_contiguous:
            return np.add(x, rows, out=x)
        h, w, c = x.shape
        flat = x.reshape(h, w * c)
        np.add(flat, np.tile(rows.reshape(h, c), (1, w)), out=flat)
        return x

    @staticmethod
    def from_planar(x: np.ndarray) -> np.ndarray:
        return x.transpose(1, 2, 0)


class TorchBackend:
    """torch primitives; a batch ``(B, C, H, W)``, per-image parameters ``(B,)`` tensors."""

    f32 = torch.float32
    errstate = staticmethod(np.errstate)  # torch does not warn; a no-op context for the same code
    inv = staticmethod(torch.linalg.inv)

    @staticmethod
    def as_float(x: torch.Tensor) -> torch.Tensor:
        return x if x.is_floating_point() else x.float()

    @staticmethod
    def to_f32(x: torch.Tensor) -> torch.Tensor:
        return x.float()

    @staticmethod
    def as_like(v: Any, like: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(v, dtype=like.dtype, device=like.device)

    @staticmethod
    def mul_wide(y: torch.Tensor, s: Any) -> torch.Tensor:
        return y.float() * s

    @staticmethod
    def clip_to_f32(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
        return x.clamp_(lo, hi).float()

    @staticmethod
    def is_scalar(v: Any) -> bool:
        return not isinstance(v, torch.Tensor) or v.numel() == 1

    @staticmethod
    def any(x: torch.Tensor) -> bool:
        return bool(x.any())

    @staticmethod
    def clip(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
        return x.clamp(lo, hi)

    @staticmethod
    def clip_(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
        return x.clamp_(lo, hi)

    @staticmethod
    def clamp_min(x: Any, lo: float) -> Any:
        return x.clamp_min(lo)

    @staticmethod
    def clamp_min_(x: torch.Tensor, lo: float) -> torch.Tensor:
        return x.clamp_min_(lo)

    @staticmethod
    def maximum_(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.maximum(x, y, out=x)

    @staticmethod
    def asin_(x: torch.Tensor) -> torch.Tensor:
        return x.asin_()

    @staticmethod
    def sin_(x: torch.Tensor) -> torch.Tensor:
        return x.sin_()

    @staticmethod
    def log_(x: torch.Tensor) -> torch.Tensor:
        return x.log_()

    @staticmethod
    def exp_(x: torch.Tensor) -> torch.Tensor:
        return x.exp_()

    @staticmethod
    def rsub_(c: float, x: torch.Tensor) -> torch.Tensor:
        return x.neg_().add_(c)

    @staticmethod
    def stack(xs: list, axis: int) -> torch.Tensor:
        return torch.stack(xs, dim=axis)

    @staticmethod
    def sum(x: torch.Tensor, axis: int) -> torch.Tensor:
        return x.sum(dim=axis, keepdim=True)

    @staticmethod
    def mean(x: torch.Tensor, axis: int) -> torch.Tensor:
        return x.mean(dim=axis, keepdim=True)

    @staticmethod
    def hw(x: torch.Tensor) -> tuple[int, int]:
        return x.shape[-2], x.shape[-1]

    @staticmethod
    def per_image(v: Any) -> Any:
        return v.view(-1, 1, 1, 1) if isinstance(v, torch.Tensor) else v

    @staticmethod
    def per_channel(v: torch.Tensor) -> torch.Tensor:
        return v[:, :, None, None]

    @staticmethod
    def channels(vals: list, like: torch.Tensor) -> torch.Tensor:
        col = [
            torch.as_tensor(v, dtype=torch.float32, device=like.device).expand(like.shape[0]) for v in vals
        ]
        return torch.stack(col, dim=1)[:, :, None, None]

    @staticmethod
    def channel_mean(x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=1, keepdim=True)

    @staticmethod
    def colour_matrix(m: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bij,bjhw->bihw", m, x)

    @staticmethod
    def row_shape(x: torch.Tensor) -> tuple[int, ...]:
        return (*x.shape[:-1], 1)

    @staticmethod
    def add_rows_(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return x.add_(rows)

    @staticmethod
    def from_planar(x: torch.Tensor) -> torch.Tensor:
        return x


#: primitives that NumPy and torch spell the same, taken from each library by name
SAME_NAME = ("log", "log1p", "exp", "sqrt", "maximum", "where", "matmul", "einsum", "broadcast_to")
for _name in SAME_NAME:
    setattr(NumpyBackend, _name, staticmethod(getattr(np, _name)))
    setattr(TorchBackend, _name, staticmethod(getattr(torch, _name)))


def backend_of(x: Any) -> type[NumpyBackend] | type[TorchBackend]:
    """The back-end of an image or parameter: torch for tensors, NumPy for anything else."""
    return TorchBackend if isinstance(x, torch.Tensor) else NumpyBackend


def uniform_f32(rng: np.random.Generator, shape: tuple) -> np.ndarray:
    """``rng.random(shape, dtype=np.float32)``, the same values and generator state, about 1.3x faster.

    NumPy makes a float32 uniform from 32 random bits (the top 24, times ``2**-24``); PCG64 gives them
    as the low then the high half of one 64-bit output, keeping the unused half for the next call.
    With no half kept and an even count, ``random_raw`` yields those outputs in one call, and their
    little-endian ``uint32`` view is the halves in that order. Other cases use ``rng.random``.
    """
    n = math.prod(shape)
    bg = rng.bit_generator
    if n % 2 or type(bg) is not np.random.PCG64 or sys.byteorder != "little" or bg.state["has_uint32"]:
        return rng.random(shape, dtype=np.float32)
    bits = bg.random_raw(n // 2).view(np.uint32)
    bits >>= 8
    out = bits.astype(np.float32)
    out *= np.float32(2.0**-24)
    return out.reshape(shape)


class NumpyDraws:
    """Draws from a ``numpy.random.Generator``. ``batch`` is ``()``: one image's parameters are scalars."""

    backend = NumpyBackend

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.batch: tuple[int, ...] = ()

    def uniform(self, lo: float, hi: float, shape: tuple = (), dtype: Any = np.float64) -> Any:
        u = self.rng.uniform(lo, hi, shape or None)
        return u if dtype == np.float64 else np.asarray(u, dtype=dtype)

    def normal(self, shape: tuple = (), dtype: Any = np.float64) -> Any:
        return self.rng.standard_normal(shape or None, dtype=dtype)

    def random(self, shape: tuple, dtype: Any = np.float64) -> np.ndarray:
        """Uniforms in ``[0, 1)``; float32 ones of a PCG64 generator by :func:`uniform_f32`."""
        if dtype == np.float32:
            return uniform_f32(self.rng, shape)
        return self.rng.random(shape, dtype=dtype)

    def integers(self, n: int, shape: tuple = ()) -> Any:
        return self.rng.integers(n, size=shape or None)

    def poisson(self, lam: np.ndarray) -> np.ndarray:
        return poisson_numpy(lam, self.rng)

    def table(self, values: Any) -> np.ndarray:
        """Constants as a float64 array to index or multiply with draws."""
        return np.asarray(values, dtype=np.float64)

    def repeat(self, m: np.ndarray) -> np.ndarray:
        """One copy of ``m`` per image."""
        return np.array(m)

    def finish(self, v: Any) -> Any:
        """A sampled parameter as the NumPy path holds it: a Python float, or a float32 array."""
        return float(v) if np.ndim(v) == 0 else np.asarray(v, dtype=np.float32)


class TorchDraws:
    """Draws from a ``torch.Generator`` on its device, ``batch`` images at a time; :meth:`finish` moves a
    sampled parameter to ``device`` as float32."""

    backend = TorchBackend

    def __init__(self, generator: torch.Generator, batch: int = 1, device: Any = None) -> None:
        self.gen = generator
        self.batch = (int(batch),)
        self.device = generator.device if device is None else torch.device(device)

    def _kw(self, dtype: Any) -> dict:
        return {"generator": self.gen, "device": self.gen.device, "dtype": dtype}

    def uniform(self, lo: float, hi: float, shape: tuple, dtype: Any = torch.float64) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(shape, **self._kw(dtype))

    def normal(self, shape: tuple, dtype: Any = torch.float64) -> torch.Tensor:
        return torch.randn(shape, **self._kw(dtype))

    def random(self, shape: tuple, dtype: Any = torch.float64) -> torch.Tensor:
        return torch.rand(shape, **self._kw(dtype))

    def integers(self, n: int, shape: tuple) -> torch.Tensor:
        return torch.randint(n, shape, generator=self.gen, device=self.gen.device)

    def poisson(self, lam: torch.Tensor) -> torch.Tensor:
        return poisson_torch(lam, self.gen)

    def table(self, values: Any) -> torch.Tensor:
        return torch.as_tensor(np.asarray(values, dtype=np.float64), device=self.gen.device)

    def repeat(self, m: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(m)).to(self.gen.device).expand(*self.batch, *m.shape).contiguous()

    def finish(self, v: torch.Tensor) -> torch.Tensor:
        return v.to(device=self.device, dtype=torch.float32)


def draws(
    generator: np.random.Generator | torch.Generator, batch: int | None = None, device: Any = None
) -> NumpyDraws | TorchDraws:
    """The draw object of a generator; ``batch`` (torch only) images per parameter draw."""
    if isinstance(generator, torch.Generator):
        return TorchDraws(generator, 1 if batch is None else batch, device)
    if batch is not None:
        raise ValueError("a numpy.random.Generator samples one image's parameters (batch=None)")
    return NumpyDraws(generator)
