"""Noise statistics of the synthetic renderings vs a simulation of the real LIS RAW test path.

For flat grey scenes at several levels and exposure ratios (Sony A7S II PGRU noise, the same noise
parameters for every path): per channel, the variance of (noisy - clean) of the network input and the
lag-1 correlation of that noise between horizontal / vertical neighbours, for

* ``real``: :func:`darkseg.synth.render.lis_raw_path` on full-sensor planes (binning, bilinear resize to
  2x the input size, 8-bit rounding, nearest 0.5x: the LIS RAW PNGs as the test pipeline loads them);
* ``sensor``, ``binned``, ``rgb``: the synthetic renderings of the same name (``synth.output``).

The variance is given as a multiple of the per-plane noise variance of the sensor at that level
(``var(noisy plane - level)``), i.e. what the rendering does to the camera noise.

Usage: ``python benchmarks/noise_match.py [--size 300 200]`` (prints a Markdown table; a few seconds).
"""

from __future__ import annotations

import argparse

import numpy as np

from darkseg.synth import build_noise_model
from darkseg.synth.render import LIS_SENSOR_SCALE, RenderOptions, lis_raw_path, render_packed, sensor_cells


def stats(noisy: np.ndarray, clean: np.ndarray) -> tuple[float, float, float]:
    """Mean over channels of (variance, lag-1 correlation along rows, along columns)."""
    out = []
    for c in range(3):
        d = (noisy - clean)[..., c].astype(np.float64)
        d -= d.mean()
        v = d.var()
        out.append((v, (d[:, 1:] * d[:, :-1]).mean() / v, (d[1:] * d[:-1]).mean() / v))
    return tuple(np.mean(out, axis=0))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, nargs=2, default=(300, 200), metavar=("W", "H"))
    p.add_argument("--camera", default="SonyA7S2")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    w, h = args.size
    wb, hb = round(2 * w * LIS_SENSOR_SCALE[0]), round(2 * h * LIS_SENSOR_SCALE[1])
    print(f"input {w}x{h}; simulated full-sensor binned planes {wb}x{hb}; camera {args.camera}\n")
    print("| level | ratio | path | variance / plane variance | lag-1 corr. along rows | along columns |")
    print("|---|---|---|---|---|---|")
    for level, ratio in ((0.05, 50.0), (0.2, 50.0), (0.2, 200.0), (0.5, 100.0)):
        noise = build_noise_model("PGRU", args.camera, ratio_range=(ratio, ratio))
        rng = np.random.default_rng([args.seed, int(level * 1000), int(ratio)])
        prm = noise.sample_params(rng)
        planes = np.full((hb, wb, 4), level, np.float32)
        noisy_planes = noise.apply(planes, prm, rng)
        plane_var = float(np.var(noisy_planes.astype(np.float64) - level))
        rows = {"real": stats(lis_raw_path(noisy_planes, (w, h)), lis_raw_path(planes, (w, h)))}
        cells = sensor_cells(np.full((h, w, 3), level, np.float32))
        o = RenderOptions(output="sensor")
        rows["sensor"] = stats(render_packed(noise.apply(cells, prm, rng), o), render_packed(cells, o))
        packed = np.full((h // 2, w // 2, 4), level, np.float32)
        for out in ("binned", "rgb"):
            o = RenderOptions(output=out)
            rows[out] = stats(render_packed(noise.apply(packed, prm, rng), o), render_packed(packed, o))
        for name, (v, ch, cv) in rows.items():
            print(f"| {level:g} | {ratio:g} | {name} | {v / plane_var:.3f} | {ch:.3f} | {cv:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
