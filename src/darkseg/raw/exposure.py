"""Automatic exposure ratio for dark RAW input (``--ratio auto``).

Training inputs are synthesised as ``noisy(clean / ratio) * ratio``: whatever the exposure ratio, the
network sees the *brightness of the clean image*, a normally exposed photo unprocessed to linear camera
RAW. A real dark RAW therefore has to be amplified until its brightness matches that distribution.

Rule: ``ratio = target / level`` where ``level`` is the mean (default) or median of the frame's normalised
linear values (black-subtracted, ``/ (white - black)``, as :func:`darkseg.raw.read_camera_raw` returns) and
``target`` the same statistic of the training inputs, clipped to ``[min_ratio, max_ratio]``.

``TRAINING_MEAN`` = 0.135: the median over images of the per-image mean of the clean packed RAW that
darkseg's synthesis makes from COCO photos (38 tinycoco-seg photos x 3 unprocess draws, CanonEOS5D4,
calibrated CCM; 10-90 % range of the per-image means 0.093-0.217). ``TRAINING_MEDIAN`` = 0.10, the same
for per-image medians. The mean is linear in exposure, so a frame darkened by ``f`` gets ``f`` times the
ratio; it is the default. The median ignores small bright light sources but is less stable in very dark
frames where most values are noise.

Limits: LibRaw output is clipped at the black level, so in very dark, noisy frames (signal of a few DN
against read noise of many DN) the clipped negative noise raises the mean and the ratio comes out low.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "TRAINING_MEAN",
    "TRAINING_MEDIAN",
    "GainEMA",
    "estimate_ratio",
    "parse_ratio",
    "resolve_ratio",
]

TRAINING_MEAN = 0.135
TRAINING_MEDIAN = 0.10


def estimate_ratio(
    raw_linear,
    stat: str = "mean",
    target: float | None = None,
    min_ratio: float = 1.0,
    max_ratio: float = 1000.0,
) -> float:
    """Amplification that brings ``raw_linear`` to the training inputs' brightness (module docstring).

    Args:
        raw_linear: normalised linear RAW in ``[0, 1]``: a Bayer mosaic ``(H, W)``, packed planes
            ``(h, w, 4)``, a binned RGB ``(h, w, 3)`` (NumPy or torch), or a :class:`darkseg.raw.RawFrame`.
        stat: ``"mean"`` or ``"median"``.
        target: the training statistic; default :data:`TRAINING_MEAN` / :data:`TRAINING_MEDIAN`.
        min_ratio, max_ratio: bounds of the result (a black frame gives ``max_ratio``).
    """
    if stat not in ("mean", "median"):
        raise ValueError(f"stat must be 'mean' or 'median', got {stat!r}")
    if not 0 < min_ratio <= max_ratio:
        raise ValueError(f"need 0 < min_ratio <= max_ratio, got {min_ratio}, {max_ratio}")
    x = getattr(raw_linear, "mosaic", raw_linear)
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        raise ValueError("empty input")
    if target is None:
        target = TRAINING_MEAN if stat == "mean" else TRAINING_MEDIAN
    level = float(x.mean() if stat == "mean" else np.median(x))
    if level <= 0:
        return float(max_ratio)
    return float(np.clip(target / level, min_ratio, max_ratio))


def parse_ratio(text: str) -> float | str:
    """``argparse`` type of a ``--ratio`` option: a finite number > 0, or ``"auto"``."""
    if str(text).strip().lower() == "auto":
        return "auto"
    try:
        v = float(text)
    except ValueError:
        raise ValueError(f"ratio must be a number > 0 or 'auto', got {text!r}") from None
    if not (np.isfinite(v) and v > 0):
        raise ValueError(f"ratio must be a number > 0 or 'auto', got {text!r}")
    return v


def resolve_ratio(ratio: float | str, raw_linear, **kwargs) -> float:
    """``ratio`` when it is a number; :func:`estimate_ratio` of ``raw_linear`` when it is ``"auto"``."""
    if isinstance(ratio, str):
        if ratio != "auto":
            raise ValueError(f"ratio must be a number > 0 or 'auto', got {ratio!r}")
        return estimate_ratio(raw_linear, **kwargs)
    return float(ratio)


class GainEMA:
    """Exponential moving average of a positive gain over video frames, in the log domain.

    ``update(g)`` returns ``exp(m)`` with ``m <- momentum * m + (1 - momentum) * log(g)`` (the first frame
    sets ``m = log(g)``). Averaging logarithms treats a doubling and a halving alike, which is how a gain
    looks on screen. ``momentum`` 0 = no smoothing; 0.9 = a time constant of about 10 frames (a step in
    brightness is 65 % followed after 10 frames, 95 % after 28).
    """

    def __init__(self, momentum: float) -> None:
        if not 0.0 <= float(momentum) < 1.0:
            raise ValueError(f"EMA momentum must be in [0, 1), got {momentum}")
        self.momentum = float(momentum)
        self._log: float | None = None

    def update(self, gain: float) -> float:
        """Feed this frame's gain (> 0); returns the smoothed gain."""
        if not (np.isfinite(gain) and gain > 0):
            raise ValueError(f"gain must be finite and > 0, got {gain}")
        lg = float(np.log(gain))
        self._log = lg if self._log is None else self.momentum * self._log + (1 - self.momentum) * lg
        return float(np.exp(self._log))

    @property
    def value(self) -> float | None:
        """The current smoothed gain (``None`` before the first frame)."""
        return None if self._log is None else float(np.exp(self._log))
