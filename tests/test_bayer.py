"""Bayer packing / mosaicking / demosaicking (darkseg.raw.bayer)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from darkseg.raw.bayer import (
    PATTERNS,
    bin2x2,
    demosaic_bilinear,
    demosaic_packed,
    mosaic_rgb,
    pack_bayer,
    unpack_bayer,
    upsample2x_bilinear,
)


@pytest.mark.parametrize("pattern", sorted(PATTERNS))
def test_pack_unpack_roundtrip_numpy_and_torch(pattern):
    rng = np.random.default_rng(0)
    m = rng.random((6, 8)).astype(np.float32)
    p = pack_bayer(m, pattern)
    assert p.shape == (3, 4, 4)
    np.testing.assert_array_equal(unpack_bayer(p, pattern), m)
    t = torch.from_numpy(m)[None, None]  # (1, 1, H, W)
    pt = pack_bayer(t, pattern)
    assert pt.shape == (1, 4, 3, 4)
    np.testing.assert_array_equal(pt[0].permute(1, 2, 0).numpy(), p)
    np.testing.assert_array_equal(unpack_bayer(pt, pattern).numpy()[0, 0], m)


@pytest.mark.parametrize("pattern", sorted(PATTERNS))
def test_packed_order_is_r_g1_b_g2(pattern):
    # constant colour planes: packed channels must be R, G, B, G whatever the pattern
    rgb = np.zeros((4, 6, 3), np.float32)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 0.1, 0.5, 0.9
    p = pack_bayer(mosaic_rgb(rgb, pattern), pattern)
    np.testing.assert_allclose(p[0, 0], [0.1, 0.5, 0.9, 0.5])
    # G1 sits on the red row, G2 on the blue row
    (ry, _), (g1y, _), (by, _), (g2y, _) = PATTERNS[pattern]
    assert g1y == ry and g2y == by and ry != by


def test_rggb_packing_matches_lis_slices():
    x = np.arange(4 * 6 * 3, dtype=np.float32).reshape(4, 6, 3)
    p = pack_bayer(mosaic_rgb(x, "RGGB"), "RGGB")
    np.testing.assert_array_equal(p[..., 0], x[0::2, 0::2, 0])
    np.testing.assert_array_equal(p[..., 1], x[0::2, 1::2, 1])
    np.testing.assert_array_equal(p[..., 2], x[1::2, 1::2, 2])
    np.testing.assert_array_equal(p[..., 3], x[1::2, 0::2, 1])


@pytest.mark.parametrize("pattern", sorted(PATTERNS))
def test_demosaic_constant_and_torch_matches_numpy(pattern):
    rgb = np.empty((7, 9, 3), np.float32)  # odd sizes allowed for demosaic
    rgb[...] = (0.2, 0.6, 0.4)
    out = demosaic_bilinear(mosaic_rgb(rgb, pattern), pattern)
    np.testing.assert_allclose(out, rgb, atol=1e-6)
    rng = np.random.default_rng(1)
    m = rng.random((10, 12)).astype(np.float32)
    a = demosaic_bilinear(m, pattern)
    b = demosaic_bilinear(torch.from_numpy(m)[None, None], pattern)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(a, b, atol=1e-6)
    # measured samples are kept unchanged
    np.testing.assert_allclose(mosaic_rgb(a, pattern), m, atol=1e-6)


def test_demosaic_interior_matches_opencv_bilinear():
    rng = np.random.default_rng(2)
    m8 = rng.integers(0, 256, (16, 20), dtype=np.uint8)
    ours = demosaic_bilinear(m8.astype(np.float32), "RGGB")
    # OpenCV names Bayer codes after the 2nd row's 2nd/3rd pixels: R at (0,0) is its "BG" code
    # when RGB output is wanted; the LIS code used COLOR_BAYER_RG2RGB, which therefore returns BGR.
    cv = cv2.cvtColor(m8, cv2.COLOR_BAYER_BG2RGB).astype(np.float32)
    np.testing.assert_allclose(ours[2:-2, 2:-2], cv[2:-2, 2:-2], atol=0.51)
    cv_lis = cv2.cvtColor(m8, cv2.COLOR_BAYER_RG2RGB).astype(np.float32)
    np.testing.assert_allclose(ours[2:-2, 2:-2, ::-1], cv_lis[2:-2, 2:-2], atol=0.51)


def test_bin2x2_and_errors():
    p = np.random.default_rng(3).random((2, 3, 4)).astype(np.float32)
    b = bin2x2(p)
    np.testing.assert_allclose(b[..., 1], 0.5 * (p[..., 1] + p[..., 3]))
    bt = bin2x2(torch.from_numpy(p).permute(2, 0, 1))
    np.testing.assert_allclose(bt.permute(1, 2, 0).numpy(), b)
    with pytest.raises(ValueError, match="even"):
        pack_bayer(np.zeros((3, 4)), "RGGB")
    with pytest.raises(ValueError, match="unknown CFA pattern"):
        pack_bayer(np.zeros((4, 4)), "RGBG")


@pytest.mark.parametrize("pattern", sorted(PATTERNS))
def test_demosaic_packed_equals_full_resolution_demosaic(pattern):
    rng = np.random.default_rng(5)
    m = rng.random((8, 12)).astype(np.float32)
    ref = demosaic_bilinear(m, pattern)
    np.testing.assert_allclose(demosaic_packed(pack_bayer(m, pattern), pattern), ref, atol=1e-6)
    pt = pack_bayer(torch.from_numpy(m)[None, None], pattern)
    out = demosaic_packed(pt, pattern)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(out, ref, atol=1e-6)


def test_upsample2x_bilinear_matches_opencv_and_torch():
    a = np.random.default_rng(0).random((5, 7, 3)).astype(np.float32)
    up = upsample2x_bilinear(a)
    assert up.shape == (10, 14, 3) and up.dtype == np.float32
    np.testing.assert_allclose(up, cv2.resize(a, (14, 10), interpolation=cv2.INTER_LINEAR), atol=1e-6)
    t = torch.from_numpy(a).permute(2, 0, 1)[None]
    ut = upsample2x_bilinear(t)
    ref = torch.nn.functional.interpolate(t, scale_factor=2, mode="bilinear", align_corners=False)
    torch.testing.assert_close(ut, ref, atol=1e-6, rtol=0)
    np.testing.assert_array_equal(ut[0].permute(1, 2, 0).numpy(), up)  # same numbers on both paths
    with pytest.raises(ValueError, match="upsample2x_bilinear"):
        upsample2x_bilinear(np.zeros((4, 4)))
