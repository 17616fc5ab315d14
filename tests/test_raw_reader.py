"""Camera RAW reading (darkseg.raw.reader) on real files, checked against rawpy's own metadata."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import shared_subdir
from darkseg.raw import RawFormatError, frame_to_input, read_camera_raw
from darkseg.raw.bayer import bin2x2, pack_bayer

rawpy = pytest.importorskip("rawpy")

CANON = "colorchart_Canon550D_MagicLantern.dng"
KODAK = "RAW_KODAK_DC50.KDC"
SCANNER = "Nikon_COOLSCAN_IV_ED_scanner.nef"


@pytest.fixture(scope="module")
def samples():
    d = shared_subdir("raw-samples")
    meta = json.loads((d / "rawpy_metadata.json").read_text())["files"]
    return d, meta


def _sites(colors: np.ndarray, idx: int) -> np.ndarray:
    return colors == idx


@pytest.mark.parametrize("name, pattern", [(CANON, "RGGB"), (KODAK, "GRBG")])
def test_real_file_levels_shape_and_channel_order(samples, name, pattern):
    d, meta = samples
    m = meta[name]
    frame = read_camera_raw(d / name)
    h, w = m["raw_image_visible_shape"]
    assert frame.shape == (h // 2 * 2, w // 2 * 2)
    assert frame.pattern == pattern
    assert frame.white_level == m["white_level"]
    np.testing.assert_allclose(frame.black_level, m["black_level_per_channel"])
    assert frame.mosaic.dtype == np.float32 and frame.mosaic.min() >= 0 and frame.mosaic.max() <= 1
    # mean signal above black matches the scout's measurement (computed independently with rawpy)
    assert frame.mosaic.mean() == pytest.approx(m["mean_signal_fraction_above_black"], rel=2e-3)

    # channel order against rawpy's per-site colour map (0=R, 1=G, 2=B, 3=G2 for colour_desc RGBG)
    with rawpy.imread(str(d / name)) as raw:
        vis = raw.raw_image_visible.astype(np.float64)[: frame.shape[0], : frame.shape[1]]
        colors = raw.raw_colors_visible[: frame.shape[0], : frame.shape[1]]
        black = np.asarray(raw.black_level_per_channel, np.float64)
        white = float(raw.white_level)
    expect = np.clip((vis - black[colors]) / (white - black[colors]), 0, 1)
    np.testing.assert_allclose(frame.mosaic, expect, atol=1e-6)
    packed = frame.packed()
    assert packed.shape == (frame.shape[0] // 2, frame.shape[1] // 2, 4)
    hp, wp = packed.shape[:2]
    # each packed plane = the sites rawpy labels R / G-on-R-row / B / G-on-B-row, in that order
    (r_row, r_col), (b_row, b_col) = np.argwhere(colors[:2, :2] == 0)[0], np.argwhere(colors[:2, :2] == 2)[0]
    g1_col, g2_col = 1 - r_col, 1 - b_col
    sites = [(r_row, r_col), (r_row, g1_col), (b_row, b_col), (b_row, g2_col)]
    for plane, (dy, dx) in enumerate(sites):
        expected_color = (0, None, 2, None)[plane]
        if expected_color is not None:
            assert np.all(colors[dy::2, dx::2] == expected_color)
        else:
            assert np.all(colors[dy::2, dx::2] % 2 == 1)  # green (LibRaw index 1 or 3)
        np.testing.assert_allclose(packed[:, :, plane], expect[dy::2, dx::2][:hp, :wp], atol=1e-6)


def test_canon_metadata(samples):
    d, meta = samples
    frame = read_camera_raw(d / CANON)
    wb = np.asarray(meta[CANON]["camera_whitebalance"][:3])
    np.testing.assert_allclose(frame.camera_wb, wb / wb[1], rtol=1e-6)
    assert frame.has_color_matrix
    np.testing.assert_allclose(frame.cam2rgb, np.asarray(meta[CANON]["color_matrix"])[:, :3], atol=1e-6)
    np.testing.assert_allclose(frame.cam2rgb.sum(1), 1.0, atol=1e-3)  # white stays white
    assert frame.visible_offset == (26, 152) and frame.raw_shape == (1182, 1888)


def test_kodak_no_matrix_and_exposure(samples):
    d, _ = samples
    frame = read_camera_raw(d / KODAK)
    assert not frame.has_color_matrix and np.array_equal(frame.cam2rgb, np.eye(3))
    assert frame.exposure_time == pytest.approx(0.00435, rel=1e-3)


def test_scanner_nef_rejected(samples):
    d, _ = samples
    with pytest.raises(RawFormatError, match="not a Bayer mosaic"):
        read_camera_raw(d / SCANNER)


def test_unreadable_and_missing(tmp_path):
    bad = tmp_path / "broken.dng"
    bad.write_bytes(b"this is not a raw file" * 10)
    with pytest.raises(RawFormatError, match="broken.dng"):
        read_camera_raw(bad)
    with pytest.raises(FileNotFoundError, match="nope.cr2"):
        read_camera_raw(tmp_path / "nope.cr2")


# ----------------------------------------------------------------- all four CFA patterns (fake LibRaw)
class _FakeRaw:
    """Just the rawpy.RawPy attributes the reader uses."""

    def __init__(self, visible, raw_pattern, black=(0, 0, 0, 0), white=1000, raw_type=None, desc=b"RGBG"):
        self.raw_image_visible = visible
        self.raw_pattern = raw_pattern
        self.black_level_per_channel = list(black)
        self.white_level = white
        self.raw_type = rawpy.RawType.Flat if raw_type is None else raw_type
        self.num_colors = 3
        self.color_desc = desc
        self.camera_whitebalance = [2.0, 1.0, 1.5, 0.0]
        self.color_matrix = np.zeros((3, 4), np.float32)
        self.rgb_xyz_matrix = np.zeros((4, 3), np.float32)
        self.sizes = type("S", (), dict(raw_height=visible.shape[0], raw_width=visible.shape[1],
                                       top_margin=0, left_margin=0))()  # fmt: skip

    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


# LibRaw index tiles: 0 = R, 1 = G (on R's row), 2 = B, 3 = G (on B's row)
_TILES = {
    "RGGB": [[0, 1], [3, 2]],
    "BGGR": [[2, 3], [1, 0]],
    "GRBG": [[1, 0], [2, 3]],
    "GBRG": [[3, 2], [0, 1]],
}


@pytest.mark.parametrize("pattern", sorted(_TILES))
def test_every_cfa_pattern_packs_r_g1_b_g2(monkeypatch, tmp_path, pattern):
    tile = np.array(_TILES[pattern])
    black = (100, 110, 120, 130)  # per colour index: exercises per-channel black subtraction
    level = np.array([600.0, 700.0, 800.0, 900.0])  # value above black of colour index k
    visible = np.tile(tile, (3, 5))
    visible = (np.asarray(black)[visible] + level[visible]).astype(np.uint16)
    visible = np.pad(visible, ((0, 1), (0, 1)), mode="edge")  # odd size: last row/col dropped
    f = tmp_path / "x.dng"
    f.write_bytes(b"\0")
    monkeypatch.setattr(rawpy, "imread", lambda p: _FakeRaw(visible, tile, black, white=1600))
    frame = read_camera_raw(f)
    assert frame.pattern == pattern and frame.shape == (6, 10)
    packed = frame.packed()
    expect = level / (1600 - np.asarray(black))  # (R, G1, B, G2) = LibRaw indices (0, 1, 2, 3)
    for c in range(4):
        np.testing.assert_allclose(packed[:, :, c], expect[c], rtol=1e-6)
    np.testing.assert_allclose(frame.black_level, black)
    np.testing.assert_allclose(frame.camera_wb, [2.0, 1.0, 1.5])
    x = frame_to_input(frame, "rgb")
    np.testing.assert_allclose(
        x[:, 0, 0].numpy(), [expect[0], (expect[1] + expect[3]) / 2, expect[2]], rtol=1e-6
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(raw_pattern=np.zeros((6, 6), int)), "X-Trans"),
        (dict(raw_pattern=None), "no colour filter array"),
        (dict(raw_pattern=np.array([[0, 1], [3, 2]]), desc=b"CMYG"), "not an R/G/G/B Bayer"),
        (dict(raw_pattern=np.array([[0, 1], [3, 2]]), raw_type="stack"), "not a Bayer mosaic"),
    ],
)
def test_non_bayer_rejected(monkeypatch, tmp_path, kwargs, match):
    if kwargs.get("raw_type") == "stack":
        kwargs["raw_type"] = rawpy.RawType.Stack
    f = tmp_path / "y.raf"
    f.write_bytes(b"\0")
    visible = np.zeros((4, 4), np.uint16)
    monkeypatch.setattr(rawpy, "imread", lambda p: _FakeRaw(visible, **kwargs))
    with pytest.raises(RawFormatError, match=match):
        read_camera_raw(f)


def test_frame_to_input_layouts_ratio_and_resize(samples):
    d, _ = samples
    frame = read_camera_raw(d / KODAK)
    packed = torch.from_numpy(pack_bayer(frame.mosaic, frame.pattern)).permute(2, 0, 1)
    x4 = frame_to_input(frame, "packed")
    assert x4.shape == (4, 256, 384) and x4.dtype == torch.float32
    torch.testing.assert_close(x4, packed)
    x3 = frame_to_input(frame, "rgb")
    torch.testing.assert_close(x3, bin2x2(packed))
    x3r = frame_to_input(frame, "rgb", ratio=8.0)
    torch.testing.assert_close(x3r, bin2x2((packed * 8).clamp(0, 1)).clamp(0, 1))
    assert x3r.max() == 1.0 and x3r.mean() > 4 * x3.mean()
    xs = frame_to_input(frame, "rgb", size=(300, 200))
    assert xs.shape == (3, 200, 300) and xs.min() >= 0 and xs.max() <= 1
    with pytest.raises(ValueError, match="ratio"):
        frame_to_input(frame, "rgb", ratio=0)
    with pytest.raises(ValueError, match="input_format"):
        frame_to_input(frame, "bayer")
