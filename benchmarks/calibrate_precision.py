"""Precision of the Tukey-lambda read-noise fit of ``darkseg calibrate`` at the heavy end of real cameras.

Dark frames are drawn with darkseg's noise model (lambda ``--lam``, default -0.24; sigma_TL ``--tl`` DN;
row noise; integer DN) and fitted by :func:`darkseg.synth.calibrate.analyse_darks`:

1. **shoot to shoot**: ``--shoots`` independent shoots of ``--darks`` frames each (``--crop`` packed
   pixels per side, as ``darkseg calibrate`` keeps them): the spread (standard deviation) of the fitted
   lambda and sigma_TL is the fit's precision, all of which now comes from the data;
2. **one shoot, refitted**: darkseg's fit uses every value, so refitting the same frames (in any order)
   gives the same numbers; for comparison, the earlier fit (``scipy.stats.ppcc_max`` on a random
   subsample of 200 000 values) is repeated with ``--shoots`` seeds on the first shoot: the spread
   between seeds that the subsample added.

    python benchmarks/calibrate_precision.py                    # 10 shoots of 15 frames, crop 512
    python benchmarks/calibrate_precision.py --crop 128 --darks 20
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from darkseg.raw.bayer import pack_bayer  # noqa: E402
from darkseg.synth.calibrate import analyse_darks, simulate_raw_frame  # noqa: E402
from darkseg.synth.noise import tukey_lambda_variance  # noqa: E402

BLACK = 512.0


def _shoot(args, rng) -> list[np.ndarray]:
    shape = (2 * args.crop, 2 * args.crop)
    draw = (simulate_raw_frame(0.0, shape, 2.0, args.lam, args.tl, args.row, rng) for _ in range(args.darks))
    return [pack_bayer(m.astype(np.float64) - BLACK) for m in draw]


def _subsample_fit(frames: list[np.ndarray], seed: int, sample: int = 200_000) -> tuple[float, float]:
    """The earlier fit: lambda = ppcc_max of a random subsample of the row-removed values, sigma_TL the
    probability-plot slope at that lambda (row-mean and quantisation corrections as darkseg applies)."""
    from scipy import stats

    rng = np.random.default_rng(seed)
    per = max(1000, sample // (4 * len(frames)))
    ys = []
    for f in frames:
        for c in range(4):
            d = f[:, :, c] - f[:, :, c].mean(1, keepdims=True)
            ys.append(d.ravel()[rng.choice(d.size, size=min(per, d.size), replace=False)])
    y = np.concatenate(ys)
    lam = float(np.clip(stats.ppcc_max(y, brack=(-0.1, 0.1), dist="tukeylambda"), -0.49, 1.0))
    _, (slope, _, _) = stats.probplot(y, sparams=(lam,), dist="tukeylambda")
    n = frames[0].shape[1]
    slope *= np.sqrt(n / (n - 1))
    return lam, float(np.sqrt(slope**2 - (1 / 12) / tukey_lambda_variance(lam)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lam", type=float, default=-0.24)
    ap.add_argument("--tl", type=float, default=4.0, help="sigma_TL in DN")
    ap.add_argument("--row", type=float, default=0.5, help="row noise in DN")
    ap.add_argument("--darks", type=int, default=15)
    ap.add_argument("--crop", type=int, default=512, help="packed pixels per side")
    ap.add_argument("--shoots", type=int, default=10)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    n_values = args.darks * args.crop * args.crop * 4
    print(f"lambda {args.lam}, sigma_TL {args.tl} DN, row {args.row} DN; {args.darks} frames x "
          f"{args.crop}x{args.crop}x4 = {n_values / 1e6:.1f} M values per shoot")  # fmt: skip
    fits, first, seconds = [], None, []
    for _ in range(args.shoots):
        frames = _shoot(args, rng)
        first = first or frames
        t = time.perf_counter()
        res, _ = analyse_darks(frames)
        seconds.append(time.perf_counter() - t)
        fits.append((res.lam, res.tl_scale))
    lam, tl = np.array(fits).T
    print(f"darkseg fit, {args.shoots} shoots: lambda {lam.mean():+.4f} +- {lam.std(ddof=1):.4f}, "
          f"sigma_TL {tl.mean():.4f} +- {100 * tl.std(ddof=1) / tl.mean():.2f} % "
          f"(median {np.median(seconds):.2f} s per fit)")  # fmt: skip
    again, _ = analyse_darks(first[::-1])
    print(f"darkseg fit, shoot 1 refitted in reverse frame order: lambda {again.lam - fits[0][0]:+.1e}, "
          f"sigma_TL {again.tl_scale / fits[0][1] - 1:+.1e} (relative) from the first fit")  # fmt: skip
    sub = np.array([_subsample_fit(first, seed) for seed in range(args.shoots)])
    print(f"earlier fit (200k random values), shoot 1, {args.shoots} seeds: lambda {sub[:, 0].mean():+.4f} "
          f"+- {sub[:, 0].std(ddof=1):.4f}, sigma_TL {sub[:, 1].mean():.4f} +- "
          f"{100 * sub[:, 1].std(ddof=1) / sub[:, 1].mean():.2f} %")  # fmt: skip


if __name__ == "__main__":
    main()
