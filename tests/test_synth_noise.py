"""Noise model statistics, Tukey-lambda sampler and camera profiles (darkseg.synth.noise)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from darkseg.synth import (
    LowLightSynthesizer,
    NoiseParams,
    SynthConfig,
    available_cameras,
    build_noise_model,
    load_camera,
    tukey_lambda_ppf,
    tukey_lambda_variance,
)
from darkseg.synth.pipeline import SynthParams
from darkseg.synth.unprocess import sample_unprocess_params

ALL_CAMERAS = ["CanonEOS5D4", "SonyA7S2", "NikonD850", "CanonEOS70D", "CanonEOS700D"]


# ----------------------------------------------------------------------------------------- cameras
def test_all_cameras_ship_and_load():
    assert sorted(available_cameras()) == sorted(ALL_CAMERAS)
    for name in ALL_CAMERAS:
        cam = load_camera(name)
        assert cam.Kmax / cam.Kmin == pytest.approx(64.0, rel=1e-9)
        assert cam.white_level > cam.black_level and cam.saturation > 10000
        assert len(cam.G_shape) in (16, 18)
    assert load_camera("CanonEOS5D4").saturation == 15871
    assert 0.0 in load_camera("SonyA7S2").G_shape  # the logistic limit is needed
    assert max(load_camera("NikonD850").G_shape) < 0


def test_canon5d4_json_equals_lis_npy_exactly():
    from conftest import shared_subdir

    d = np.load(shared_subdir("lis-camera-noise-params") / "CanonEOS5D4_params.npy", allow_pickle=True).item()
    cam = load_camera("CanonEOS5D4")
    assert cam.Kmin == d["Kmin"] and cam.Kmax == d["Kmax"]
    assert list(cam.G_shape) == [float(v) for v in d["G_shape"]]
    for key in ("g_scale", "G_scale", "R_scale"):
        assert cam.profiles["Profile-1"][key] == {k: float(v) for k, v in d["Profile-1"][key].items()}
    np.testing.assert_array_equal(np.asarray(cam.color_bias, dtype=np.float32), d["color_bias"])
    assert np.asarray(cam.color_bias).astype(np.float32).astype(np.float64).tolist() == [
        list(r) for r in cam.color_bias
    ]


def test_bad_camera_inputs(tmp_path):
    with pytest.raises(ValueError, match="unknown camera 'Nope'"):
        load_camera("Nope")
    bad = tmp_path / "cam.json"
    bad.write_text('{"name": "x", "Kmin": 1}')
    with pytest.raises(ValueError, match="lacks"):
        load_camera(bad)
    with pytest.raises(ValueError, match="color_bias"):
        build_noise_model("PGRU", "SonyA7S2").__class__(camera="SonyA7S2", components="PB")


# --------------------------------------------------------------------------------------- Tukey
@pytest.mark.parametrize("lam", [-0.2428, -0.1, 0.0, 0.0286, 0.2])
def test_tukey_sampler_matches_scipy(lam):
    u = np.linspace(0.001, 0.999, 101)
    np.testing.assert_allclose(tukey_lambda_ppf(u, lam), stats.tukeylambda.ppf(u, lam), rtol=1e-9, atol=1e-9)
    ut = torch.from_numpy(u)
    np.testing.assert_allclose(
        tukey_lambda_ppf(ut, lam).numpy(), stats.tukeylambda.ppf(u, lam), rtol=1e-9, atol=1e-9
    )
    rng = np.random.default_rng(7)
    samples = tukey_lambda_ppf(rng.random(20000), lam)
    assert stats.kstest(samples, stats.tukeylambda(lam).cdf).pvalue > 1e-3
    g = torch.Generator().manual_seed(7)
    ts = tukey_lambda_ppf(torch.rand(20000, generator=g).clamp_min(2.0**-25), lam).double().numpy()
    assert stats.kstest(ts, stats.tukeylambda(lam).cdf).pvalue > 1e-3
    assert tukey_lambda_variance(lam) == pytest.approx(stats.tukeylambda.var(lam), rel=1e-6)


# -------------------------------------------------------------------------------------- sampler
def test_parameter_sampler_ranges_and_medians():
    model = build_noise_model("PGRU", "CanonEOS5D4")
    p = model.sample_params(torch.Generator().manual_seed(0), 4000)
    cam = model.camera
    assert p.K.min() >= cam.Kmin * (1 - 1e-6) and p.K.max() <= cam.Kmax * (1 + 1e-6)
    assert p.ratio.min() >= 10 and p.ratio.max() <= 100
    assert set(np.round(p.lam.double().numpy(), 6)) <= set(np.round(cam.G_shape, 6))
    # CanonEOS5D4's profile: 2000 draws gave G_scale median ~4.1, R_scale median ~0.57
    assert float(p.G_scale.median()) == pytest.approx(4.1, rel=0.1)
    assert float(p.R_scale.median()) == pytest.approx(0.57, rel=0.1)
    rng = np.random.default_rng(0)
    ks = np.array([model.sample_params(rng).K for _ in range(2000)])
    # log-uniform K: ln K uniform on [ln Kmin, ln Kmax]
    lk = (np.log(ks) - math.log(cam.Kmin)) / math.log(cam.Kmax / cam.Kmin)
    assert stats.kstest(lk, "uniform").pvalue > 1e-3


# ------------------------------------------------------------------------------ statistics test
LEVELS = (0.03, 0.1, 0.3, 0.7)
SAT = 15871.0


def _expected(level: float, p: NoiseParams) -> tuple[float, float]:
    """Analytic mean and variance (normalised units) of PGRU noise on a flat level (no clipping)."""
    scale = SAT / p.ratio
    y_dn = level * scale
    var_dn = p.K * y_dn + p.G_scale**2 * tukey_lambda_variance(p.lam) + p.R_scale**2
    return level + p.quant / scale, var_dn / scale**2


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("lam", [0.0714, 0.0])
def test_flat_grey_noisy_raw_matches_analytic_mean_and_variance(backend, lam):
    """Flat grey sRGB patches through the full synthesiser (packed output, no 8-bit rounding).

    Per level and per packed channel: |mean - expected| < 4 standard errors and the sample variance
    within 6 % of K*signal + sigma_TL^2 var(TL(lam)) + sigma_R^2 (in DN, then normalised). With 256
    packed rows, the row-noise part is estimated from 256 values per channel, hence 6 %.
    """
    synth = LowLightSynthesizer(SynthConfig(output="packed", quantize_8bit=False))
    rng = np.random.default_rng(123)
    up = sample_unprocess_params(rng)
    noise = NoiseParams(K=1.0, ratio=4.0, lam=lam, g_scale=3.0, G_scale=3.0, R_scale=1.5, quant=0.3)
    params = SynthParams(up, noise)
    size = 512
    for level_idx, srgb_level in enumerate((0.25, 0.45, 0.65, 0.85)):
        img = np.full((size, size, 3), srgb_level, np.float32)
        if backend == "numpy":
            clean, noisy = synth.numpy(img, np.random.default_rng(level_idx), params=params)
        else:
            bp = LowLightSynthesizer.stack_params([params])
            g = torch.Generator().manual_seed(level_idx)
            c, n = synth.synth(torch.from_numpy(img).permute(2, 0, 1)[None], g, params=bp)
            clean, noisy = (t[0].permute(1, 2, 0).double().numpy() for t in (c, n))
        for ch in range(4):
            level = float(clean[0, 0, ch])
            assert np.ptp(clean[..., ch]) < 1e-6
            mean, var = _expected(level, noise)
            z = noisy[..., ch].astype(np.float64)
            assert z.min() > 0 and z.max() < 1, "test levels must not clip"
            se = math.sqrt(var / z.size) + math.sqrt(noise.R_scale**2 / z.shape[0]) / (SAT / noise.ratio)
            assert abs(z.mean() - mean) < 4 * se, (backend, level, ch, z.mean(), mean)
            assert z.var() == pytest.approx(var, rel=0.06), (backend, level, ch)


def test_components_behave_as_specified():
    y = np.full((16, 24, 4), 0.4)
    rng = np.random.default_rng(0)
    p = NoiseParams(K=1.0, ratio=10.0, lam=0.1, g_scale=2.0, G_scale=2.0, R_scale=1.0, quant=0.25)
    ident = build_noise_model("none").apply(y, p, rng)
    assert np.abs(ident - y).max() < 1e-6
    rows = type(build_noise_model("none"))("CanonEOS5D4", components="R").apply(y, p, rng) - y
    assert np.ptp(rows, axis=1).max() < 1e-6 and np.ptp(rows) > 1e-4  # constant along columns
    q = type(build_noise_model("none"))("CanonEOS5D4", components="U").apply(y, p, rng) - y
    assert np.ptp(q) < 1e-6 and q.flat[0] == pytest.approx(0.25 * 10 / SAT, rel=1e-4)
    qp = type(build_noise_model("none"))("CanonEOS5D4", components="U", per_pixel_quantisation=True)
    assert np.ptp(qp.apply(y, p, rng)) > 1e-5
    out = build_noise_model("PGRU").apply(np.random.default_rng(1).random((8, 8, 4)), p, rng)
    assert out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize("shape", [(6, 8, 4), (7, 3), (1,)])
@pytest.mark.parametrize("pending_half", [False, True])
def test_uniform_f32_is_numpys_float32_stream(shape, pending_half):
    """The fast float32 uniforms are ``Generator.random(dtype=float32)`` bit for bit, and leave the
    generator in the same state (odd counts and a kept half-output take NumPy's own path)."""
    from darkseg.synth.backend import uniform_f32

    a, b = np.random.default_rng(5), np.random.default_rng(5)
    if pending_half:  # one float32 draw leaves half of a 64-bit output for the next call
        a.random(1, dtype=np.float32), b.random(1, dtype=np.float32)
    got, ref = uniform_f32(a, shape), b.random(shape, dtype=np.float32)
    assert got.dtype == np.float32 and got.shape == ref.shape and np.array_equal(got, ref)
    assert np.array_equal(a.random(3, dtype=np.float32), b.random(3, dtype=np.float32))
    assert a.random() == b.random()


def test_add_rows_equals_broadcast_add():
    from darkseg.synth.backend import NumpyBackend

    rng = np.random.default_rng(0)
    z, rows = rng.random((5, 7, 4)), rng.random((5, 1, 4))
    ref = z + rows
    assert np.array_equal(NumpyBackend.add_rows_(z, rows), ref) and np.array_equal(z, ref)
    zt = rng.random((7, 5, 4)).transpose(1, 0, 2)  # not contiguous: the broadcast path
    ref = zt + rows
    assert np.array_equal(NumpyBackend.add_rows_(zt, rows), ref)
