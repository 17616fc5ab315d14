"""Preview ISP (darkseg.raw.render, module darkseg.raw.preview) vs LibRaw's own rendering of the same file."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import shared_subdir
from darkseg.raw import read_camera_raw, render
from darkseg.raw.preview import auto_exposure_gain, luminance, srgb_decode, srgb_encode

rawpy = pytest.importorskip("rawpy")
CANON = "colorchart_Canon550D_MagicLantern.dng"


@pytest.fixture(scope="module")
def canon():
    d = shared_subdir("raw-samples")
    return d / CANON, read_camera_raw(d / CANON)


def test_linear_render_matches_libraw(canon):
    """Bilinear demosaic + camera WB + the file's colour matrix, no gamma: the same image as LibRaw's
    linear-demosaic sRGB rendering up to a global scale (LibRaw normalises WB/levels differently)."""
    path, frame = canon
    ours = render(frame, auto_exposure=False, gamma="linear").astype(np.float64)
    with rawpy.imread(str(path)) as raw:
        ref = raw.postprocess(
            use_camera_wb=True,
            no_auto_bright=True,
            gamma=(1, 1),
            output_bps=16,
            demosaic_algorithm=rawpy.DemosaicAlgorithm.LINEAR,
            output_color=rawpy.ColorSpace.sRGB,
        ).astype(np.float64)
    assert ours.shape == ref.shape == (1156, 1734, 3)
    for c in range(3):
        corr = [np.corrcoef(ours[..., c].ravel(), ref[..., k].ravel())[0, 1] for k in range(3)]
        assert corr[c] > 0.99, (c, corr)  # same channel agrees ...
        assert corr[c] - max(corr[k] for k in range(3) if k != c) > 0.05, (c, corr)  # ... and no swap
    # colour balance: per-channel means in the same proportions
    ours_m, ref_m = ours.reshape(-1, 3).mean(0), ref.reshape(-1, 3).mean(0)
    np.testing.assert_allclose(ours_m / ours_m[1], ref_m / ref_m[1], rtol=0.05)


def test_half_resolution_and_auto_exposure(canon):
    _, frame = canon
    half = render(frame, half=True, gamma="linear", target=0.18)
    assert half.shape == (578, 867, 3) and half.dtype == np.uint8
    # auto-exposure puts the median luminance at the target (the scene is dark: mean 4.5 % of range)
    med = np.median(luminance(half.astype(np.float32) / 255))
    assert med == pytest.approx(0.18, abs=0.01)
    dark = render(frame, half=True, auto_exposure=False)
    bright = render(frame, half=True)
    assert bright.mean() > dark.mean() + 30
    assert render(frame, half=True, ratio=4.0, auto_exposure=False).mean() > dark.mean() + 30


def test_white_balance_options(canon):
    _, frame = canon
    none = render(
        frame, half=True, white_balance="none", color_matrix=False, gamma="linear", auto_exposure=False
    )
    cam = render(
        frame, half=True, white_balance="camera", color_matrix=False, gamma="linear", auto_exposure=False
    )
    # camera WB gains (R 2.48, B 1.69 relative to G) scale R and B up relative to G
    r_none, r_cam = none[..., 0].mean() / none[..., 1].mean(), cam[..., 0].mean() / cam[..., 1].mean()
    assert r_cam / r_none == pytest.approx(frame.camera_wb[0], rel=0.1)
    gray = render(
        frame, half=True, white_balance="gray", color_matrix=False, gamma="linear", auto_exposure=False
    )
    m = gray.reshape(-1, 3).astype(float).mean(0)
    np.testing.assert_allclose(m / m[1], 1.0, atol=0.08)
    with pytest.raises(ValueError, match="white_balance"):
        render(frame, white_balance="tungsten")
    with pytest.raises(ValueError, match="gamma"):
        render(frame, half=True, gamma="log")


def test_srgb_curve_and_gain():
    x = np.linspace(0, 1, 1001, dtype=np.float32)
    np.testing.assert_allclose(srgb_decode(srgb_encode(x)), x, atol=1e-5)
    assert srgb_encode(np.float32(0.18)) == pytest.approx(0.4614, abs=1e-3)  # mid grey -> 46 %
    img = np.full((4, 4, 3), 0.01, np.float32)
    assert auto_exposure_gain(img, 0.18) == pytest.approx(18.0, rel=1e-4)
    assert auto_exposure_gain(np.zeros((4, 4, 3), np.float32), max_gain=50) == 50
