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


#: OpenCV's Bayer code giving R, G, B for each CFA pattern: OpenCV names a pattern after the second row's
#: 2nd and 3rd pixels, so R at (0, 0) (RGGB) is its "BG" code
OPENCV_RGB_CODE = {
    "RGGB": cv2.COLOR_BAYER_BG2RGB,
    "BGGR": cv2.COLOR_BAYER_RG2RGB,
    "GRBG": cv2.COLOR_BAYER_GB2RGB,
    "GBRG": cv2.COLOR_BAYER_GR2RGB,
}


@pytest.mark.parametrize("pattern", sorted(PATTERNS))
def test_demosaic_equals_opencv_inside_and_its_border_rule(pattern):
    """docs/decisions.md "Demosaic": darkseg keeps its own bilinear demosaic. Inside the 1-pixel border it
    equals OpenCV's ``cvtColor(COLOR_Bayer*2RGB)`` (what the original used) rounded half up, as OpenCV
    rounds; on the border OpenCV copies the adjacent row / column, while darkseg interpolates with the
    mosaic extended by reflect-101 (OpenCV's interior rule applied to that extended mosaic)."""
    rng = np.random.default_rng(2)
    m8 = rng.integers(0, 256, (16, 20), dtype=np.uint8)
    ours = demosaic_bilinear(m8.astype(np.float32), pattern)
    cv = cv2.cvtColor(m8, OPENCV_RGB_CODE[pattern]).astype(np.float32)
    np.testing.assert_array_equal(np.floor(ours + 0.5)[1:-1, 1:-1], cv[1:-1, 1:-1])
    # OpenCV's border: the neighbouring row / column again
    for edge, inner in ((cv[0], cv[1]), (cv[-1], cv[-2]), (cv[:, 0], cv[:, 1]), (cv[:, -1], cv[:, -2])):
        np.testing.assert_array_equal(edge, inner)
    # darkseg's border: OpenCV's interior rule on the reflect-101 extension (2 pixels keep the CFA phase)
    extended = cv2.copyMakeBorder(m8, 2, 2, 2, 2, cv2.BORDER_REFLECT_101)
    cv_ext = cv2.cvtColor(extended, OPENCV_RGB_CODE[pattern]).astype(np.float32)[2:-2, 2:-2]
    np.testing.assert_array_equal(np.floor(ours + 0.5), cv_ext)
    assert not np.array_equal(np.floor(ours + 0.5)[0], cv[0])  # so the two border rules differ
    # the original code's COLOR_BAYER_RG2RGB on an RGGB mosaic returns B, G, R (docs/decisions.md D1)
    if pattern == "RGGB":
        cv_lis = cv2.cvtColor(m8, cv2.COLOR_BAYER_RG2RGB).astype(np.float32)
        np.testing.assert_array_equal(np.floor(ours + 0.5)[1:-1, 1:-1, ::-1], cv_lis[1:-1, 1:-1])


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
