"""``estimate_ratio`` (``--ratio auto``): real RAW samples darkened by a known factor give it back."""

from __future__ import annotations

import numpy as np
import pytest

from darkseg.raw.bayer import pack_bayer
from darkseg.raw.exposure import TRAINING_MEAN, estimate_ratio, parse_ratio, resolve_ratio
from darkseg.synth.noise import NoiseModel

SAMPLES = ["colorchart_Canon550D_MagicLantern.dng", "RAW_KODAK_DC50.KDC"]


@pytest.fixture(scope="module", params=SAMPLES)
def frame(request):
    from conftest import shared_subdir
    from darkseg.raw import read_camera_raw

    return read_camera_raw(shared_subdir("raw-samples") / request.param)


@pytest.mark.parametrize("factor", [4.0, 20.0, 80.0])
def test_darkened_real_raw_gives_the_factor_back(frame, factor):
    ref = estimate_ratio(frame.mosaic, min_ratio=1e-3)
    s = 15871.0  # darkened in 14-bit DN and rounded, as a sensor would record it
    dark = np.round(frame.mosaic.astype(np.float64) * s / factor) / s
    assert estimate_ratio(dark, min_ratio=1e-3) / ref == pytest.approx(factor, rel=0.10)
    assert estimate_ratio(dark, stat="median", min_ratio=1e-3) > 0


@pytest.mark.parametrize("factor", [10.0, 50.0])
def test_with_darksegs_noise_at_low_iso(frame, factor):
    """Shot, Tukey read, row and quantisation noise at a low-ISO gain (K = 0.5), clipped at black."""
    packed = pack_bayer(frame.mosaic, frame.pattern)
    ref = estimate_ratio(packed, min_ratio=1e-3)
    model = NoiseModel("CanonEOS5D4", components="PGRU")
    p = model.sample_params(np.random.default_rng(0))
    p.K, p.ratio, p.G_scale, p.R_scale, p.lam = 0.5, factor, 1.5, 0.3, 0.1
    dark = model.apply(packed, p, np.random.default_rng(1)) / factor  # the RAW as shot, normalised
    assert estimate_ratio(dark, min_ratio=1e-3) / ref == pytest.approx(factor, rel=0.10)


def test_rule_and_bounds():
    x = np.full((8, 8), TRAINING_MEAN / 30)
    assert estimate_ratio(x) == pytest.approx(30.0)
    assert estimate_ratio(np.zeros((4, 4))) == 1000.0
    assert estimate_ratio(np.full((4, 4), 0.9)) == 1.0  # never darkens by default
    assert estimate_ratio(np.full((4, 4), 0.01), max_ratio=5) == 5.0
    with pytest.raises(ValueError):
        estimate_ratio(x, stat="mode")


def test_parse_and_resolve():
    assert parse_ratio("auto") == "auto" and parse_ratio("AUTO") == "auto"
    assert parse_ratio("12.5") == 12.5
    for bad in ("0", "-3", "nan", "inf", "x"):
        with pytest.raises(ValueError):
            parse_ratio(bad)
    x = np.full((4, 4), TRAINING_MEAN / 8)
    assert resolve_ratio(3.0, x) == 3.0
    assert resolve_ratio("auto", x) == pytest.approx(8.0)
    with pytest.raises(ValueError):
        resolve_ratio("maybe", x)
