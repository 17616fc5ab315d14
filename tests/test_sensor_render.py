"""``synth.output: sensor``: the noise statistics of the real LIS RAW test path.

The real LIS RAW test images were binned from the full sensor (about 3372 x 2251 binned pixels), resized
to 1200 x 800 (OpenCV bilinear), rounded to 8 bits and halved (nearest) at test time.
:func:`darkseg.synth.render.lis_raw_path` simulates that path on full-sensor planes; the ``"sensor"``
rendering must give the same per-level noise variance and the same (absent) correlation between
neighbouring pixels, which ``"binned"`` (2x up-sampling of the training image's own planes) does not.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from darkseg.synth import LowLightSynthesizer, SynthConfig, build_noise_model
from darkseg.synth.render import (
    LIS_SENSOR_SCALE,
    RenderOptions,
    lis_raw_path,
    render_packed,
    sensor_cells,
    sensor_combine,
    sensor_fractions,
)

W, H = 150, 120  # network-input size of the statistics tests
WB, HB = round(2 * W * LIS_SENSOR_SCALE[0]), round(2 * H * LIS_SENSOR_SCALE[1])  # full-sensor planes


def noise_stats(noisy: np.ndarray, clean: np.ndarray) -> np.ndarray:
    """Per channel: variance of the noise, lag-1 correlation along rows and along columns -> (3, 3)."""
    out = []
    for c in range(3):
        d = (noisy - clean)[..., c].astype(np.float64)
        d = d - d.mean()
        v = d.var()
        out.append([v, (d[:, 1:] * d[:, :-1]).mean() / v, (d[1:] * d[:-1]).mean() / v])
    return np.array(out)


def test_fractions_are_opencv_bilinear_then_nearest_half():
    rng = np.random.default_rng(0)
    binned = rng.random((HB, WB, 3), dtype=np.float32)
    real = cv2.resize(binned, (2 * W, 2 * H), interpolation=cv2.INTER_LINEAR)[0::2, 0::2]
    fx = sensor_fractions(W, WB / (2 * W))
    fy = sensor_fractions(H, HB / (2 * H))
    x0 = np.floor((2 * np.arange(W) + 0.5) * WB / (2 * W) - 0.5).astype(int)
    y0 = np.floor((2 * np.arange(H) + 0.5) * HB / (2 * H) - 0.5).astype(int)
    # the 2x2 cells of output pixel (i, j) are the binned pixels OpenCV reads for it
    cells = binned[np.stack([y0, y0 + 1], 1).ravel()][:, np.stack([x0, x0 + 1], 1).ravel()]
    mine = sensor_combine(cells, scale=(WB / (2 * W), HB / (2 * H)))
    assert fx.min() >= 0 and fx.max() < 1 and fy.min() >= 0 and fy.max() < 1
    np.testing.assert_allclose(mine, real, atol=2e-5)
    t = sensor_combine(torch.from_numpy(cells).permute(2, 0, 1), scale=(WB / (2 * W), HB / (2 * H)))
    np.testing.assert_allclose(t.permute(1, 2, 0).numpy(), mine, atol=1e-6)


@pytest.mark.parametrize(("level", "ratio"), [(0.05, 100.0), (0.3, 100.0), (0.2, 250.0)])
def test_sensor_noise_matches_simulated_real_path(level, ratio):
    noise = build_noise_model("PGRU", "SonyA7S2", ratio_range=(ratio, ratio))
    rng = np.random.default_rng([1, int(level * 100), int(ratio)])
    params = noise.sample_params(rng)
    planes = np.full((HB, WB, 4), level, np.float32)
    real = noise_stats(lis_raw_path(noise.apply(planes, params, rng), (W, H)), lis_raw_path(planes, (W, H)))

    opts = RenderOptions(output="sensor")
    cells = sensor_cells(np.full((H, W, 3), level, np.float32))
    sensor = noise_stats(render_packed(noise.apply(cells, params, rng), opts), render_packed(cells, opts))

    packed = np.full((H // 2, W // 2, 4), level, np.float32)
    bopts = RenderOptions(output="binned")
    binned = noise_stats(render_packed(noise.apply(packed, params, rng), bopts), render_packed(packed, bopts))

    # per-level variance within 10 % (sampling error of 18 000 pixels with row noise: a few %)
    np.testing.assert_allclose(sensor[:, 0], real[:, 0], rtol=0.10)
    # no correlation between neighbours in either (row noise leaves a little along rows)
    assert np.all(np.abs(real[:, 1:]) < 0.06), real
    assert np.all(np.abs(sensor[:, 1:]) < 0.06), sensor
    np.testing.assert_allclose(sensor[:, 1:], real[:, 1:], atol=0.05)
    # "binned" has the up-sampling's correlation: the mismatch "sensor" removes
    assert np.all(binned[:, 1:] > 0.6), binned


def test_sensor_output_numpy_and_torch_paths():
    img = np.random.default_rng(0).random((37, 50, 3)).astype(np.float32) * 0.5 + 0.25
    synth = LowLightSynthesizer(SynthConfig(output="sensor", camera="SonyA7S2", ratio_range=(50, 50)))
    clean, noisy = synth.numpy(img, np.random.default_rng(1))
    assert clean.shape == noisy.shape == (37, 50, 3)
    assert abs(float(noisy.mean() - clean.mean())) < 0.01
    x = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[None].repeat(2, 1, 1, 1)
    tc, tn = synth(x, torch.Generator().manual_seed(0))
    assert tc.shape == tn.shape == (2, 3, 37, 50)
    # same rendering of the clean image on both paths (same unprocessing parameters)
    params = synth.sample_numpy(np.random.default_rng(2))
    c_np, n_np = synth.numpy(img, np.random.default_rng(3), params)
    c_t, n_t = synth(x[:1], torch.Generator().manual_seed(3), LowLightSynthesizer.stack_params([params]))
    np.testing.assert_allclose(c_t[0].permute(1, 2, 0).numpy(), c_np, atol=1 / 255 + 1e-6)
    v_np = float(np.var(n_np - c_np))
    v_t = float(torch.var(n_t[0] - c_t[0]))
    assert v_t == pytest.approx(v_np, rel=0.25)


def test_sensor_config_value():
    assert SynthConfig(output="sensor").output == "sensor"
    with pytest.raises(ValueError, match="output: must be one of"):
        SynthConfig(output="sensors")
