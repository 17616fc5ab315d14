"""``darkseg calibrate``: a closed loop through real 16-bit files.

Dark frames and flat pairs are drawn with darkseg's own noise primitives from a known camera (several
ISOs across the profile's K range, Tukey lambda != 0, row noise, colour bias, pixel response
non-uniformity, vignetting), written as 16-bit PNG/TIFF mosaics in the ``ISO<n>/`` layout, calibrated with
the command line, and the recovered parameters compared with the truth.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from darkseg.cli import main
from darkseg.raw.bayer import pack_bayer
from darkseg.synth.calibrate import (
    CalibrationError,
    dark_frame_summary,
    estimate_gain,
    fit_loglinear,
    simulate_raw_frame,
)
from darkseg.synth.noise import NoiseModel, load_camera, tukey_lambda_variance

SHAPE = (256, 256)
BLACK, WHITE = 512.0, 16383.0
SAT = WHITE - BLACK
N_DARK, N_LEVELS = 20, 6


def _truth(camera: str, isos, lams, seed: int) -> list[dict]:
    """Per-ISO parameters drawn from a profile's own law (K log-spaced over [Kmin, Kmax])."""
    cam = load_camera(camera)
    fits = cam.profiles["Profile-1"]
    rng = np.random.default_rng(seed)
    ks = np.geomspace(cam.Kmin, cam.Kmax, len(isos))
    out = []
    for i, (iso, k, lam) in enumerate(zip(isos, ks, lams)):
        e = rng.standard_normal(2)
        tl = math.exp(
            fits["G_scale"]["slope"] * math.log(k) + fits["G_scale"]["bias"] + fits["G_scale"]["sigma"] * e[0]
        )
        row = math.exp(
            fits["R_scale"]["slope"] * math.log(k) + fits["R_scale"]["bias"] + fits["R_scale"]["sigma"] * e[1]
        )
        bias = np.asarray(cam.color_bias[i % len(cam.color_bias)]) if cam.color_bias else np.zeros(4)
        out.append({"iso": iso, "K": float(k), "lam": lam, "tl": tl, "row": row, "bias": bias})
    return out


def _packed(signal, shape, p: dict, rng, **kw) -> np.ndarray:
    """A simulated frame with parameters ``p`` (K, lam, tl, row), packed, in DN above black."""
    m = simulate_raw_frame(signal, shape, p["K"], p["lam"], p["tl"], p["row"], rng, **kw)
    return pack_bayer(m.astype(np.float64) - BLACK)


def _write(path: Path, mosaic: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), mosaic)


def _flat_signal(level: float, rng_vig) -> np.ndarray:
    h2, w2 = SHAPE[0] // 2, SHAPE[1] // 2
    yy, xx = np.mgrid[0:h2, 0:w2]
    vig = 1.0 - 0.05 * (((yy - h2 / 2) / h2) ** 2 + ((xx - w2 / 2) / w2) ** 2)
    return level * vig[:, :, None] * np.array([0.7, 1.0, 0.55, 1.0])


def _make_dataset(
    root: Path, truth: list[dict], seed: int, ext: str = ".png", levels_frames: int = 2
) -> None:
    rng = np.random.default_rng(seed)
    prnu = 1.0 + 0.005 * np.random.default_rng(99).standard_normal((SHAPE[0] // 2, SHAPE[1] // 2, 4))
    (root / "dark").mkdir(parents=True, exist_ok=True)
    meta = {"black_level": BLACK, "white_level": WHITE, "cfa_pattern": "RGGB"}
    for sub in ("dark", "flat"):
        (root / sub).mkdir(parents=True, exist_ok=True)
        (root / sub / "raw.json").write_text(json.dumps(meta))
    for t in truth:
        kw = dict(K=t["K"], lam=t["lam"], tl_scale=t["tl"], row_scale=t["row"], rng=rng, bias=t["bias"])
        for j in range(N_DARK):
            _write(root / "dark" / f"ISO{t['iso']}" / f"d{j:02d}{ext}", simulate_raw_frame(0.0, SHAPE, **kw))
        for li, lv in enumerate(np.geomspace(0.02, 0.5, N_LEVELS) * SAT):
            sig = _flat_signal(lv, rng)
            for j in range(levels_frames):
                m = simulate_raw_frame(sig, SHAPE, prnu=prnu, **kw)
                _write(root / "flat" / f"ISO{t['iso']}" / f"f{li}_{j}{ext}", m)


def _calibrate(root: Path, out: Path, *extra: str) -> int:
    return main(["calibrate", "--dark", str(root / "dark"), "--flat", str(root / "flat"), "--out", str(out),
                 "--no-progress", *extra])  # fmt: skip


ISOS = [100, 200, 400, 800, 1600, 3200, 6400]
LAMS = [0.157, 0.1, 0.057, 0.0, -0.1, 0.086, 0.2]


@pytest.fixture(scope="module")
def loop(tmp_path_factory):
    root = tmp_path_factory.mktemp("calib")
    truth = _truth("CanonEOS5D4", ISOS, LAMS, seed=1)
    _make_dataset(root, truth, seed=2)
    out = root / "TestCam.json"
    assert _calibrate(root, out, "--plots", str(root / "plots")) == 0
    return root, truth, json.loads(out.read_text()), out


def _per_iso(profile):
    return {int(p["iso"]): p for p in profile["calibration"]["per_iso"]}


def test_recovers_gain_read_row_and_shape(loop):
    _, truth, prof, _ = loop
    got = _per_iso(prof)
    for t in truth:
        g = got[t["iso"]]
        assert g["gain"]["K"] == pytest.approx(t["K"], rel=0.03), t["iso"]
        assert g["gain"]["r2"] > 0.98
        assert g["dark"]["tl_scale"] == pytest.approx(t["tl"], rel=0.05), t["iso"]
        assert g["dark"]["row_scale"] == pytest.approx(t["row"], rel=0.05), t["iso"]
        assert abs(g["dark"]["lam"] - t["lam"]) <= 0.02, t["iso"]
        n_rows, n_px = N_DARK * SHAPE[0] / 2, N_DARK * SHAPE[0] * SHAPE[1] / 4  # per channel
        se = t["tl"] * math.sqrt(tukey_lambda_variance(t["lam"]) / n_px) + t["row"] / math.sqrt(n_rows)
        np.testing.assert_allclose(g["dark"]["bias"], t["bias"], atol=4 * se + 0.01)  # 4 standard errors
        assert g["dark"]["g_scale"] > 0 and g["dark"]["n_frames"] == N_DARK
        assert g["dark_files"] == N_DARK and g["flat_files"] == 2 * N_LEVELS
    # the profile's own fields, in darkseg's schema
    assert prof["Kmin"] == pytest.approx(truth[0]["K"], rel=0.03)
    assert prof["Kmax"] == pytest.approx(truth[-1]["K"], rel=0.03)
    np.testing.assert_allclose(prof["G_shape"], LAMS, atol=0.02)
    assert len(prof["color_bias"]) == len(ISOS)
    assert prof["cfa_pattern"] == "RGGB" and prof["black_level"] == BLACK and prof["white_level"] == WHITE


def test_cross_iso_fits_within_sampling_error(loop):
    _, truth, prof, _ = loop
    ks = [t["K"] for t in truth]
    for key, tkey in (("G_scale", "tl"), ("R_scale", "row")):
        true_fit = fit_loglinear(ks, [t[tkey] for t in truth])  # the fit on the true per-ISO values
        got = prof["profiles"]["Profile-1"][key]
        law = load_camera("CanonEOS5D4").profiles["Profile-1"][key]  # the law they were drawn from
        # estimation error only: a few percent per point -> a few hundredths in slope and bias
        assert got["slope"] == pytest.approx(true_fit.slope, abs=0.03), key
        assert got["bias"] == pytest.approx(true_fit.bias, abs=0.05), key
        assert got["sigma"] == pytest.approx(true_fit.sigma, abs=0.03), key
        # against the generating law: within 3 standard errors of the fit
        fit = prof["calibration"]["fits"][key]
        assert abs(got["slope"] - law["slope"]) <= 3 * fit["slope_se"] + 0.03, key
        assert abs(got["bias"] - law["bias"]) <= 3 * fit["bias_se"] + 0.05, key


def test_profile_loads_everywhere_and_plots_exist(loop):
    root, _, prof, out = loop
    cam = load_camera(str(out))  # what `darkseg synth --camera PATH` and SynthConfig(camera=PATH) call
    assert cam.name == "TestCam" and len(cam.G_shape) == len(ISOS)
    model = NoiseModel(str(out), components="PGRU")
    p = model.sample_params(np.random.default_rng(0))
    y = model.apply(np.full((16, 16, 4), 0.3, np.float32), p, np.random.default_rng(1))
    assert y.shape == (16, 16, 4) and np.isfinite(y).all()
    from darkseg.synth.pipeline import LowLightSynthesizer, SynthConfig

    LowLightSynthesizer(SynthConfig(camera=str(out), noise_model="PGRU"))
    assert (root / "plots" / "noise_vs_K.png").stat().st_size > 1000
    assert len(list((root / "plots").glob("ptc_ISO*.png"))) == len(ISOS)
    assert prof["calibration"]["skipped_files"] == []


def test_synthetic_frames_match_held_out_frames(loop):
    """Frames drawn with the recovered per-ISO parameters have the statistics of held-out real ones."""
    _, truth, prof, _ = loop
    got = _per_iso(prof)
    rng = np.random.default_rng(7)
    for t in (truth[1], truth[4]):
        g = got[t["iso"]]
        rec = {"K": g["gain"]["K"], "lam": g["dark"]["lam"], "tl": g["dark"]["tl_scale"],
               "row": g["dark"]["row_scale"], "bias": g["dark"]["bias"]}  # fmt: skip
        real = [_packed(0.0, (512, 512), t, rng, bias=t["bias"]) for _ in range(3)]
        syn = [_packed(0.0, (512, 512), rec, rng, bias=rec["bias"]) for _ in range(3)]
        a = [dark_frame_summary(x) for x in real]
        b = [dark_frame_summary(x) for x in syn]
        std_a, std_b = np.mean([s["std"] for s in a]), np.mean([s["std"] for s in b])
        assert std_b == pytest.approx(std_a, rel=0.03)
        row_a, row_b = np.mean([s["row_std"] for s in a]), np.mean([s["row_std"] for s in b])
        assert row_b == pytest.approx(row_a, rel=0.1)
        qa, qb = np.mean([s["quantiles"] for s in a], 0), np.mean([s["quantiles"] for s in b], 0)
        np.testing.assert_allclose(qb, qa, atol=0.05 * std_a + 0.5)  # 1 ... 99 % quantiles (integer data)
        # flats: measured variance of held-out pairs = K mu + read + row, as the recovered profile predicts
        sig = 0.2 * SAT
        pa = [_packed(sig, (512, 512), t, rng) for _ in range(2)]
        v = np.var(pa[0] - pa[1]) / 2
        pred = g["gain"]["K"] * sig + g["dark"]["tl_scale"] ** 2 * tukey_lambda_variance(g["dark"]["lam"])
        pred += g["dark"]["row_scale"] ** 2 + 1 / 12
        assert v == pytest.approx(pred, rel=0.04)


def test_shipped_canon_profile_through_the_loop(tmp_path):
    """The CanonEOS5D4 profile: its K range, its lambdas, its fitted laws and colour bias rows."""
    cam = load_camera("CanonEOS5D4")
    isos = [100, 400, 1600, 6400, 25600]
    lams = [cam.G_shape[i] for i in (0, 4, 9, 12, 16)]
    truth = _truth("CanonEOS5D4", isos, lams, seed=5)
    _make_dataset(tmp_path, truth, seed=6, ext=".tif")
    out = tmp_path / "canon.json"
    assert _calibrate(tmp_path, out) == 0
    got = _per_iso(json.loads(out.read_text()))
    for t in truth:
        g = got[t["iso"]]
        assert g["gain"]["K"] == pytest.approx(t["K"], rel=0.03)
        assert g["dark"]["tl_scale"] == pytest.approx(t["tl"], rel=0.05)
        assert g["dark"]["row_scale"] == pytest.approx(t["row"], rel=0.05)
        assert abs(g["dark"]["lam"] - t["lam"]) <= 0.02


# ------------------------------------------------------------------------------------------ robustness


@pytest.fixture(scope="module")
def messy(tmp_path_factory):
    """Three ISOs with hot pixels, a saturated flat, a misfiled dark frame, an unreadable file, a frame of
    another camera; ISO 400 has one flat frame per level."""
    root = tmp_path_factory.mktemp("messy")
    truth = _truth("SonyA7S2", [100, 400, 1600], [0.05, -0.05, 0.12], seed=3)
    _make_dataset(root, truth[:2], seed=4)
    # ISO 400 again with one frame per level
    for p in (root / "flat" / "ISO400").glob("*_1.png"):
        p.unlink()
    _make_dataset(root / "tmp1600", truth[2:], seed=5)
    for sub in ("dark", "flat"):
        (root / "tmp1600" / sub / "ISO1600").rename(root / sub / "ISO1600")
    rng = np.random.default_rng(8)
    hot = (rng.integers(0, SHAPE[0], 40), rng.integers(0, SHAPE[1], 40))
    for p in (root / "dark" / "ISO100").glob("*.png"):  # stuck pixels in every frame of ISO 100
        m = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        m[hot] = 4000
        cv2.imwrite(str(p), m)
    for p in (root / "flat" / "ISO100").glob("*.png"):
        m = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        m[hot] = 16383
        cv2.imwrite(str(p), m)
    t = truth[2]
    wrong = simulate_raw_frame(0.0, SHAPE, t["K"], t["lam"], t["tl"], t["row"], rng)  # ISO 1600 frame
    _write(root / "dark" / "ISO100" / "zz_misfiled.png", wrong)
    sat = simulate_raw_frame(0.9 * SAT * 1.5, SHAPE, t["K"], t["lam"], t["tl"], t["row"], rng)
    _write(root / "flat" / "ISO100" / "zz_saturated.png", sat)
    (root / "dark" / "ISO100" / "zz_broken.png").write_bytes(b"not a png at all")
    _write(
        root / "dark" / "ISO100" / "zz_othercam.png",
        simulate_raw_frame(0.0, (128, 192), 1.0, 0.0, 2.0, 0.3, rng),
    )
    out = root / "messy.json"
    rc = _calibrate(root, out)
    return root, truth, rc, out


def test_bad_files_named_and_skipped_rest_calibrated(messy, capsys):
    root, truth, rc, out = messy
    assert rc == 0
    prof = json.loads(out.read_text())
    skipped = {Path(s["path"]).name: s["reason"] for s in prof["calibration"]["skipped_files"]}
    assert set(skipped) == {"zz_misfiled.png", "zz_saturated.png", "zz_broken.png", "zz_othercam.png"}
    assert "another ISO" in skipped["zz_misfiled.png"]
    assert "saturated" in skipped["zz_saturated.png"]
    assert "unreadable" in skipped["zz_broken.png"]
    assert "another camera" in skipped["zz_othercam.png"]
    got = _per_iso(prof)
    assert got[100]["dark"]["bad_pixels"] >= 40  # the stuck pixels are masked ...
    assert got[400]["gain"]["mode"] == "single"
    for t in truth:  # ... and every ISO still comes out right
        g = got[t["iso"]]
        assert g["gain"]["K"] == pytest.approx(t["K"], rel=0.03), t["iso"]
        assert g["dark"]["tl_scale"] == pytest.approx(t["tl"], rel=0.05), t["iso"]
        assert g["dark"]["row_scale"] == pytest.approx(t["row"], rel=0.05), t["iso"]
        assert abs(g["dark"]["lam"] - t["lam"]) <= 0.02, t["iso"]


def test_metadata_iso_wins_over_folder(tmp_path):
    truth = _truth("SonyA7S2", [100, 800], [0.0, 0.1], seed=9)
    _make_dataset(tmp_path, truth, seed=10)
    src = tmp_path / "dark" / "ISO800" / "d00.png"
    dst = tmp_path / "dark" / "ISO100" / "moved.png"
    src.rename(dst)
    dst.with_suffix(".json").write_text(json.dumps({"iso": 800}))
    out = tmp_path / "p.json"
    assert _calibrate(tmp_path, out) == 0
    prof = json.loads(out.read_text())
    assert any("moved.png" in n and "ISO 800" in n for n in prof["calibration"]["notes"])
    assert _per_iso(prof)[800]["dark_files"] == N_DARK


def test_tiff_exif_iso_is_read(tmp_path):
    """A 16-bit TIFF mosaic with an EXIF ISO tag filed under the wrong folder is used at its own ISO."""
    from PIL import Image, TiffImagePlugin

    from darkseg.synth.calibrate_frames import read_frame

    m = simulate_raw_frame(0.0, SHAPE, 1.0, 0.0, 2.0, 0.3, np.random.default_rng(0))
    ifd = TiffImagePlugin.ImageFileDirectory_v2()
    ifd[34855], ifd.tagtype[34855] = 1600, 3
    ifd[272], ifd.tagtype[272] = "Sensor X", 2
    path = tmp_path / "ISO100" / "frame.tif"
    path.parent.mkdir()
    Image.fromarray(m).save(path, format="TIFF", tiffinfo=ifd)
    f = read_frame(path, tmp_path, "dark", 512, {"black_level": BLACK, "white_level": WHITE})
    assert f.iso == 1600.0 and f.camera == "Sensor X" and "ISO 100" in f.note
    np.testing.assert_array_equal(f.packed, pack_bayer(m))


def test_too_few_flats_is_an_error_naming_the_iso(tmp_path, capsys):
    truth = _truth("SonyA7S2", [100, 800], [0.0, 0.1], seed=11)
    _make_dataset(tmp_path, truth, seed=12)
    for p in sorted((tmp_path / "flat" / "ISO800").glob("*.png"))[1:]:
        p.unlink()
    assert _calibrate(tmp_path, tmp_path / "p.json") == 2
    err = capsys.readouterr().err
    assert "ISO 800" in err and "flat" in err
    assert not (tmp_path / "p.json").exists()


def test_single_iso_is_an_error():
    with pytest.raises(CalibrationError, match="at least 2"):
        fit_loglinear([1.0], [2.0])


def test_gain_from_single_frames_absorbs_prnu():
    """One frame per level: the quadratic photon-transfer fit keeps K despite a 1 % PRNU."""
    rng = np.random.default_rng(0)
    prnu = 1.0 + 0.01 * rng.standard_normal((128, 128, 4))
    cam = {"K": 2.0, "lam": 0.0, "tl": 3.0, "row": 0.5}
    levels = [[_packed(lv, SHAPE, cam, rng, prnu=prnu)] for lv in np.geomspace(300, 8000, 8)]
    g = estimate_gain(levels, SAT)
    assert g.mode == "single"
    assert abs(g.K / 2.0 - 1) < 0.03


# --------------------------------------------------------------------------------- DNG NoiseProfile


def _write_dng(path: Path, iso: int, noise_profile, black=64.0, white=1023) -> None:
    """A small DNG-structured TIFF with the tags the quick path reads (written by Pillow)."""
    from PIL import Image, TiffImagePlugin

    ifd = TiffImagePlugin.ImageFileDirectory_v2()
    for tag, val, typ in (
        (50706, bytes((1, 4, 0, 0)), 1),  # DNGVersion
        (271, "Acme", 2),
        (272, "Phone 1", 2),
        (34855, iso, 3),  # ISOSpeedRatings
        (50714, (black,), 5),  # BlackLevel
        (50717, white, 4),  # WhiteLevel
        (51041, tuple(noise_profile), 12),  # NoiseProfile
        (33421, (2, 2), 3),
        (33422, bytes((2, 1, 1, 0)), 1),  # CFAPattern BGGR
    ):
        ifd[tag] = val
        ifd.tagtype[tag] = typ
    Image.fromarray(np.full((8, 8), 300, np.uint16)).save(path, format="TIFF", tiffinfo=ifd)


def test_dng_noise_profile_quick_path(tmp_path, capsys):
    s1, o1 = [2e-4, 2.2e-4, 1.8e-4], [1e-6, 1.2e-6, 0.8e-6]
    _write_dng(tmp_path / "a.dng", 100, [v for pair in zip(s1, o1) for v in pair])
    _write_dng(tmp_path / "b.dng", 800, [8 * 2e-4, 30e-6])  # one pair for all planes
    out = tmp_path / "phone.json"
    rc = main(
        ["calibrate", "--dng-profile", str(tmp_path / "a.dng"), str(tmp_path / "b.dng"), "--out", str(out)]
    )
    assert rc == 0
    assert "Poisson-Gaussian" in capsys.readouterr().out
    prof = json.loads(out.read_text())
    rng = 1023 - 64
    k1, g1 = 2e-4 * rng, math.sqrt(1e-6) * rng
    k2, g2 = 8 * 2e-4 * rng, math.sqrt(30e-6) * rng
    assert prof["Kmin"] == pytest.approx(k1) and prof["Kmax"] == pytest.approx(k2)
    g = prof["profiles"]["Profile-1"]["g_scale"]
    assert g["slope"] == pytest.approx(math.log(g2 / g1) / math.log(k2 / k1))
    assert math.exp(g["slope"] * math.log(k1) + g["bias"]) == pytest.approx(g1)
    assert prof["cfa_pattern"] == "BGGR" and prof["calibration"]["camera_model"] == "Acme Phone 1"
    # PG with this profile draws the tag's variance: K x + sigma_g^2 at the sampled K
    model = NoiseModel(str(out), components="Pg")
    p = model.sample_params(np.random.default_rng(0))
    assert p.g_scale == pytest.approx(math.exp(g["slope"] * math.log(p.K) + g["bias"]))
    NoiseModel(str(out), components="PGRU")  # loads for the full model too


def test_dng_without_noise_profile_is_named(tmp_path, capsys):
    from conftest import shared_subdir

    dng = shared_subdir("raw-samples") / "colorchart_Canon550D_MagicLantern.dng"
    assert main(["calibrate", "--dng-profile", str(dng), "--out", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err
    assert "colorchart_Canon550D_MagicLantern.dng" in err and "NoiseProfile" in err


def test_iso_without_flats_gets_interpolated_k(tmp_path):
    truth = _truth("SonyA7S2", [100, 800], [0.0, 0.1], seed=13)
    _make_dataset(tmp_path, truth, seed=14)
    for p in (tmp_path / "flat" / "ISO800").glob("*.png"):
        p.unlink()
    out = tmp_path / "p.json"
    assert _calibrate(tmp_path, out) == 0
    prof = json.loads(out.read_text())
    g = _per_iso(prof)
    assert g[800]["gain"]["mode"] == "interpolated"
    assert g[800]["gain"]["K"] == pytest.approx(8 * g[100]["gain"]["K"])  # one measured ISO: K proportional
    assert any("ISO 800" in n and "interpolated" in n for n in prof["calibration"]["notes"])


def test_reads_a_real_camera_raw(tmp_path):
    """The rawpy path: levels and CFA from LibRaw, camera from the TIFF tags, ISO from the folder."""
    from conftest import shared_subdir
    from darkseg.synth.calibrate_frames import read_frame

    src = shared_subdir("raw-samples") / "colorchart_Canon550D_MagicLantern.dng"
    dst = tmp_path / "dark" / "ISO200" / src.name
    dst.parent.mkdir(parents=True)
    dst.write_bytes(src.read_bytes())
    f = read_frame(dst, tmp_path / "dark", "dark", crop=128)
    assert f.iso == 200.0  # the file says ISO 0 (unknown)
    assert f.packed.shape == (128, 128, 4) and f.packed.dtype == np.uint16
    assert f.black.tolist() == [2056.0] * 4 and f.white == 15000.0 and f.pattern == "RGGB"
    assert f.camera == "Canon Canon EOS Kiss X4" and f.mosaic_shape == (1156, 1734)
    full = read_frame(dst, tmp_path / "dark", "dark", crop=None)
    assert full.packed.shape == (578, 867, 4)
    t, l = (578 - 128) // 2, (867 - 128) // 2
    np.testing.assert_array_equal(full.packed[t : t + 128, l : l + 128], f.packed)


def test_single_dark_frame_heavy_tails_and_hot_pixels():
    """One dark frame: hot pixels are still masked, heavy read-noise tails are not mistaken for them."""
    from darkseg.synth.calibrate import analyse_darks

    rng = np.random.default_rng(21)
    m = simulate_raw_frame(0.0, SHAPE, 3.5, -0.1, 7.5, 0.9, rng)
    m[rng.integers(0, SHAPE[0], 20), rng.integers(0, SHAPE[1], 20)] = 4000
    res, mask = analyse_darks([pack_bayer(m.astype(np.float64) - BLACK)])
    assert 18 <= res.bad_pixels <= 22
    assert abs(res.lam + 0.1) <= 0.02
    assert abs(res.tl_scale / 7.5 - 1) <= 0.05
