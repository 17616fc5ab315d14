"""Plots of a calibration (matplotlib, Agg): photon-transfer curves and the cross-ISO noise fits."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from darkseg.utils.io import atomic_write_bytes

__all__ = ["write_plots"]

_CH = ("R", "G1", "B", "G2")
_COL = ("tab:red", "tab:green", "tab:blue", "tab:olive")


def _save(fig, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    atomic_write_bytes(path, buf.getvalue())


def plot_names(results) -> list[str]:
    """The files :func:`write_plots` writes for ``results``: ``ptc_ISO<n>.png`` per ISO with measured
    photon-transfer points, then ``noise_vs_K.png``."""
    return [f"ptc_ISO{r.iso:g}.png" for r in results if r.gain.points] + ["noise_vs_K.png"]


def write_plots(results, fits, out: str | os.PathLike) -> list[Path]:
    """``ptc_ISO<n>.png`` per ISO with measured K and ``noise_vs_K.png``; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for r in results:
        g = r.gain
        if not g.points:
            continue
        fig, ax = plt.subplots(figsize=(6, 4.5))
        for c, (mu, v, keep) in enumerate(g.points):
            ax.scatter(
                mu[keep], v[keep], s=4, color=_COL[c], alpha=0.5, label=f"{_CH[c]}: K={g.K_channels[c]:.4g}"
            )
            if (~keep).any():
                ax.scatter(mu[~keep], v[~keep], s=10, marker="x", color="k", alpha=0.6)
            xs = np.linspace(0, mu.max() if mu.size else 1, 50)
            ax.plot(xs, g.K_channels[c] * xs + g.c_channels[c], color=_COL[c], lw=1)
        ax.set_xlabel("tile mean above black (DN)")
        ax.set_ylabel("variance (DN²)" + (", pair difference / 2" if g.mode == "pairs" else ", high-pass"))
        ax.set_title(f"ISO {r.iso:g}: K = {g.K:.4g} DN/e⁻, R² = {g.r2:.4f} (× = rejected)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        p = out / f"ptc_ISO{r.iso:g}.png"
        _save(fig, p)
        plt.close(fig)
        written.append(p)
    k = np.array([r.gain.K for r in results])
    series = {
        "G_scale": [r.dark.tl_scale for r in results],
        "g_scale": [r.dark.g_scale for r in results],
        "R_scale": [max(r.dark.row_scale, 1e-6) for r in results],
    }
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    xs = np.linspace(np.log(k.min()) - 0.2, np.log(k.max()) + 0.2, 50)
    for ax, (key, s) in zip(axes, series.items()):
        f = fits[key]
        ax.scatter(np.log(k), np.log(s), color="k", s=14, zorder=3)
        line = f.slope * xs + f.bias
        ax.plot(xs, line, color="tab:blue")
        ax.fill_between(xs, line - f.sigma, line + f.sigma, color="tab:blue", alpha=0.2, label="± sigma")
        ax.set_xlabel("ln K")
        ax.set_ylabel(f"ln {key}")
        ax.set_title(f"{key}: slope {f.slope:.3f}, bias {f.bias:.3f}, sigma {f.sigma:.3f}", fontsize=9)
        ax.legend(fontsize=8)
    fig.tight_layout()
    p = out / "noise_vs_K.png"
    _save(fig, p)
    plt.close(fig)
    written.append(p)
    return written
