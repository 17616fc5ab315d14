"""Unprocessing, rendering and the LowLightSynthesizer (numpy and torch paths)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from darkseg.synth import LowLightSynthesizer, SynthConfig, process_linear, unprocess
from darkseg.synth.unprocess import (
    CAM2RGB_LIS,
    gamma_expand,
    inverse_smoothstep,
    linearize,
    linearize_table,
    sample_unprocess_params,
    smoothstep,
    unprocess_packed,
)


def test_tone_curve_facts():
    x = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(inverse_smoothstep(x), [0, 0.32635182, 0.5, 0.67364818, 1], atol=1e-7)
    np.testing.assert_allclose(smoothstep(inverse_smoothstep(x)), x, atol=1e-12)
    np.testing.assert_allclose(CAM2RGB_LIS.sum(1), 1, atol=1e-6)
    np.testing.assert_allclose(np.linalg.inv(CAM2RGB_LIS).sum(1), 1, atol=1e-6)


def test_fast_linearisation_matches_the_reference_formula():
    """The fused float32 path (exp(2.2 ln x)) equals max(inverse_smoothstep(x), 1e-8) ** 2.2 in float64."""
    x = np.concatenate([np.linspace(-0.1, 1.1, 10001), [0.0, 1e-9, 1.0]]).astype(np.float32)
    x0 = x.copy()
    ref = np.maximum(inverse_smoothstep(x.astype(np.float64)), 1e-8) ** 2.2
    fast = linearize(x)
    assert fast.dtype == np.float32 and fast.shape == x.shape
    np.testing.assert_allclose(fast, ref, rtol=0, atol=1e-6)
    xt = torch.from_numpy(x)
    fast_t = linearize(xt)
    assert fast_t.dtype == torch.float32
    np.testing.assert_allclose(fast_t.numpy(), ref, rtol=0, atol=1e-6)
    for expanded in (
        gamma_expand(inverse_smoothstep(x.astype(np.float64))),
        gamma_expand(inverse_smoothstep(xt.double())).numpy(),
    ):
        np.testing.assert_allclose(expanded, ref, rtol=1e-12, atol=0)
    np.testing.assert_array_equal(x, x0)  # the input is not written to
    np.testing.assert_array_equal(xt.numpy(), x0)


def test_uint8_table_lookup_equals_linearising_k_over_255_bit_for_bit():
    """uint8 images are linearised by looking their codes up; every code gives the bits of the float path
    (``float32(k) / 255``), in the table, the unprocessing functions and the whole synthesis."""
    codes = np.arange(256, dtype=np.uint8)
    table = linearize_table()
    assert table.dtype == np.float32 and table.shape == (256,) and not table.flags.writeable
    np.testing.assert_array_equal(table, linearize(codes.astype(np.float32) / 255.0))
    rng = np.random.default_rng(3)
    img = rng.permutation(np.tile(codes, 3 * 37 * 31 // 256 + 1))[: 37 * 31 * 3].reshape(37, 31, 3)
    img[:16, :16] = codes.reshape(16, 16, 1)  # every code in every channel at every CFA site
    as_float = img.astype(np.float32) / 255.0
    p = sample_unprocess_params(rng, "random")
    np.testing.assert_array_equal(unprocess(img, p), unprocess(as_float, p))
    even = img[:36, :30]
    for pattern in ("RGGB", "GBRG"):
        got = unprocess_packed(even, p, pattern)
        np.testing.assert_array_equal(got, unprocess_packed(even.astype(np.float32) / 255.0, p, pattern))
        np.testing.assert_array_equal(got, unprocess_packed(even, p, pattern, table))
    for output in ("rgb", "sensor", "binned"):
        synth = LowLightSynthesizer(SynthConfig(output=output))
        for a, b in zip(
            synth.numpy(img, np.random.default_rng(5)), synth.numpy(as_float, np.random.default_rng(5))
        ):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("ccm", ["calibrated", "random"])
def test_unprocess_then_process_is_identity_where_nothing_clips(ccm):
    rng = np.random.default_rng(0)
    x = rng.uniform(0.05, 0.6, (32, 48, 3)).astype(np.float32)
    for _ in range(5):
        p = sample_unprocess_params(rng, ccm)
        cam = unprocess(x, p)
        assert cam.max() < 1.0 and cam.min() > 0.0, "test input must not clip"
        np.testing.assert_allclose(process_linear(cam, p), x, atol=1e-3)
    g = torch.Generator().manual_seed(0)
    xt = torch.from_numpy(x).permute(2, 0, 1)[None].repeat(4, 1, 1, 1)
    pt = sample_unprocess_params(g, ccm, batch=4)
    back = process_linear(unprocess(xt, pt), pt)
    assert (back - xt).abs().max() < 1e-3


def test_full_pipeline_flat_colour_roundtrip_through_bayer():
    # a flat colour survives mosaic + demosaic exactly; with the full ISP it returns the input
    cfg = SynthConfig(
        noise_model="none",
        quantize_8bit=False,
        render_wb=True,
        render_brighten=True,
        render_ccm=True,
        render_gamma=True,
        render_tone=True,
    )
    s = LowLightSynthesizer(cfg)
    img = np.empty((6, 10, 3), np.float32)
    img[...] = (0.3, 0.5, 0.2)
    clean, noisy = s.numpy(img, np.random.default_rng(0))
    np.testing.assert_allclose(clean, img, atol=1e-3)
    np.testing.assert_allclose(noisy, img, atol=1e-3)


def test_midgrey_example_and_channel_order():
    s = LowLightSynthesizer(SynthConfig())
    p = s.sample_numpy(np.random.default_rng(0))
    p.unprocess.rgb_gain, p.unprocess.red_gain, p.unprocess.blue_gain = 1 / 0.8, 2.15, 1.7
    grey = np.full((4, 6, 3), 128 / 255, np.float32)
    clean, _ = s.numpy(grey, np.random.default_rng(0), params=p)
    np.testing.assert_allclose(clean[1, 2] * 255, (21, 45, 26))  # docs/synthesis.md, brightness
    red = np.zeros((8, 8, 3), np.float32)
    red[..., 0] = 1.0
    clean, _ = s.numpy(red, np.random.default_rng(0), params=p)
    assert np.argmax(clean.mean((0, 1))) == 0  # outputs are RGB
    legacy = LowLightSynthesizer(SynthConfig(legacy_swap_rb=True))
    clean_l, _ = legacy.numpy(red, np.random.default_rng(0), params=p)
    np.testing.assert_array_equal(clean_l, clean[..., ::-1])


def test_numpy_and_torch_paths_agree_given_the_same_parameters():
    rng = np.random.default_rng(1)
    imgs = [rng.random((24, 30, 3)).astype(np.float32) for _ in range(3)]
    for cfg in (
        SynthConfig(noise_model="none", quantize_8bit=False),
        SynthConfig(noise_model="none", quantize_8bit=False, output="packed", ccm="random"),
        SynthConfig(noise_model="none", render_ccm=True, render_gamma=True, render_wb=True),
    ):
        s = LowLightSynthesizer(cfg)
        params = [s.sample_numpy(rng) for _ in imgs]
        outs = [s.numpy(im, rng, params=p)[0] for im, p in zip(imgs, params)]
        batch = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2)
        tc, tn = s.synth(batch, torch.Generator().manual_seed(0), params=s.stack_params(params))
        for i, o in enumerate(outs):
            t = tc[i].permute(1, 2, 0).numpy()
            if cfg.quantize_8bit:  # 8-bit rounding ties may flip by one code on float noise
                assert np.mean(np.abs(t - o) > 1e-6) < 1e-3 and np.abs(t - o).max() <= 1 / 255 + 1e-6
            else:
                np.testing.assert_allclose(t, o, atol=2e-6)


def test_seeded_determinism_and_per_image_parameters():
    s = LowLightSynthesizer(SynthConfig())
    x = torch.rand(3, 3, 20, 28, generator=torch.Generator().manual_seed(5))
    a = s.synth(x, torch.Generator().manual_seed(0))
    b = s.synth(x, torch.Generator().manual_seed(0))
    c = s.synth(x, torch.Generator().manual_seed(1))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])
    p = s.sample_torch(8, torch.Generator().manual_seed(0), torch.device("cpu"))
    for v in (p.noise.K, p.noise.ratio, p.unprocess.red_gain, p.noise.G_scale):
        assert len(torch.unique(v)) == 8
    img = x[0].permute(1, 2, 0).numpy()
    n1 = s.numpy(img, np.random.default_rng(3))
    n2 = s.numpy(img, np.random.default_rng(3))
    assert all(np.array_equal(u, v) for u, v in zip(n1, n2))


def test_shapes_odd_sizes_and_outputs():
    s = LowLightSynthesizer(SynthConfig())
    g = torch.Generator().manual_seed(0)
    c, n = s.synth(torch.rand(3, 13, 17), g)
    assert c.shape == n.shape == (3, 13, 17) and c.dtype == torch.float32
    assert float(n.min()) >= 0 and float(n.max()) <= 1
    c, n = s.numpy(np.random.default_rng(0).random((13, 17, 3)), np.random.default_rng(0))
    assert c.shape == n.shape == (13, 17, 3) and n.dtype == np.float32
    packed = LowLightSynthesizer(SynthConfig(output="packed"))
    c, n = packed.synth(torch.rand(2, 3, 12, 16), g)
    assert c.shape == (2, 4, 6, 8)
    grey = torch.full((3, 8, 8), 0.5)
    c, _ = packed.synth(grey, g)
    assert torch.allclose(c[1], c[3])  # G1 == G2 on grey: channel order R, G1, B, G2
    assert float(c[1].mean()) > float(c[0].mean()) and float(c[1].mean()) > float(c[2].mean())
    with pytest.raises(ValueError, match="even height and width"):
        packed.synth(torch.rand(3, 13, 16), g)
    with pytest.raises(ValueError, match="legacy_swap_rb"):
        SynthConfig(output="packed", legacy_swap_rb=True)
    with pytest.raises(ValueError, match="noise_model"):
        SynthConfig(noise_model="XYZ")


@pytest.mark.parametrize("camera", ["SonyA7S2", "NikonD850", "CanonEOS70D", "CanonEOS700D"])
@pytest.mark.parametrize("model", ["PG", "PGRU"])
def test_every_camera_and_model_runs(camera, model):
    s = LowLightSynthesizer(SynthConfig(camera=camera, noise_model=model))
    c, n = s.synth(torch.rand(2, 3, 16, 16), torch.Generator().manual_seed(0))
    assert torch.isfinite(n).all() and float(n.min()) >= 0 and float(n.max()) <= 1
    assert float((n - c).abs().mean()) > 0


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_matches_cpu_clean_path():
    s = LowLightSynthesizer(SynthConfig(quantize_8bit=False))
    x = torch.rand(2, 3, 32, 32)
    p = s.sample_torch(2, torch.Generator().manual_seed(0), torch.device("cpu"))
    cpu = s.synth(x, torch.Generator().manual_seed(0), params=p)[0]
    pc = s.sample_torch(2, torch.Generator().manual_seed(0), torch.device("cpu"))
    pc.unprocess = type(pc.unprocess)(*(v.cuda() for v in vars(p.unprocess).values()))
    pc.noise = type(pc.noise)(*(None if v is None else v.cuda() for v in vars(p.noise).values()))
    gpu = s.synth(x.cuda(), torch.Generator("cuda").manual_seed(0), params=pc)[0]
    assert (gpu.cpu() - cpu).abs().max() < 1e-5


@pytest.mark.parametrize("pattern", ["RGGB", "BGGR", "GRBG", "GBRG"])
def test_fused_unprocess_packed_equals_unprocess_mosaic_pack(pattern):
    from darkseg.raw.bayer import mosaic_rgb, pack_bayer
    from darkseg.synth.unprocess import unprocess_packed

    rng = np.random.default_rng(4)
    x = rng.random((10, 14, 3)).astype(np.float32)
    x[:3] = 0.98  # highlights: exercise the protection mask
    for ccm in ("calibrated", "random"):
        p = sample_unprocess_params(rng, ccm)
        ref = pack_bayer(mosaic_rgb(unprocess(x, p), pattern), pattern)
        np.testing.assert_allclose(unprocess_packed(x, p, pattern), ref, atol=2e-6)
        pt = LowLightSynthesizer.stack_params([LowLightSynthesizer().sample_numpy(rng)]).unprocess
        pt.rgb2cam, pt.cam2rgb = torch.from_numpy(p.rgb2cam)[None], torch.from_numpy(p.cam2rgb)[None]
        for k in ("rgb_gain", "red_gain", "blue_gain"):
            setattr(pt, k, torch.tensor([getattr(p, k)], dtype=torch.float32))
        xt = torch.from_numpy(x).permute(2, 0, 1)[None]
        out = unprocess_packed(xt, pt, pattern)[0].permute(1, 2, 0).numpy()
        np.testing.assert_allclose(out, ref, atol=2e-6)


def test_binned_output_renders_like_the_lis_raw_pngs():
    """output="binned": 2x2 binning at half resolution, bilinear 2x upsampling, 8-bit (decision D8)."""
    from darkseg.raw.bayer import bin2x2, upsample2x_bilinear
    from darkseg.synth.render import RenderOptions, render_packed

    rng = np.random.default_rng(0)
    packed = rng.random((6, 9, 4)).astype(np.float32)
    out = render_packed(packed, RenderOptions(output="binned"))
    assert out.shape == (12, 18, 3) and out.dtype == np.float32
    ref = np.round(255 * upsample2x_bilinear(bin2x2(packed))) / 255
    np.testing.assert_allclose(out, ref, atol=1e-6)
    # LIS order of operations: resize then round (8-bit codes), not round then resize
    np.testing.assert_allclose(out * 255, np.round(out * 255), atol=1e-3)
    round_first = upsample2x_bilinear(np.round(255 * bin2x2(packed)) / 255)
    assert np.abs(out - round_first).max() > 0.5 / 255
    # the detector's 0.5x nearest resize keeps out[2i, 2j]: a 9/16, 3/16, 3/16, 1/16 blend of binned pixels
    b = bin2x2(packed)
    want = 0.5625 * b[1, 1] + 0.1875 * (b[0, 1] + b[1, 0]) + 0.0625 * b[0, 0]
    np.testing.assert_allclose(
        render_packed(packed, RenderOptions(output="binned", quantize_8bit=False))[2, 2], want, atol=1e-6
    )

    s = LowLightSynthesizer(SynthConfig(output="binned"))
    srgb = rng.random((3, 13, 17)).astype(np.float32)
    c, n = s.synth(torch.from_numpy(srgb), torch.Generator().manual_seed(0))
    assert c.shape == n.shape == (3, 13, 17) and s.output_channels == 3 and s.output_scale == 1.0
    # numpy and torch agree given the same parameters (noise-free, full precision)
    s = LowLightSynthesizer(SynthConfig(output="binned", noise_model="none", quantize_8bit=False))
    p = s.sample_numpy(rng)
    img = rng.random((12, 16, 3)).astype(np.float32)
    cn, _ = s.numpy(img, rng, params=p)
    ct, _ = s.synth(torch.from_numpy(img).permute(2, 0, 1)[None], params=s.stack_params([p]))
    np.testing.assert_allclose(ct[0].permute(1, 2, 0).numpy(), cn, atol=2e-6)
    # binned differs from the demosaic: it is smoother (no per-site interpolation pattern)
    d = LowLightSynthesizer(SynthConfig(output="rgb", noise_model="none", quantize_8bit=False))
    cd, _ = d.numpy(img, rng, params=p)
    assert np.abs(cd - cn).max() > 1e-3
    legacy = LowLightSynthesizer(
        SynthConfig(output="binned", legacy_swap_rb=True, noise_model="none", quantize_8bit=False)
    )
    np.testing.assert_array_equal(legacy.numpy(img, rng, params=p)[0], cn[..., ::-1])
    with pytest.raises(ValueError, match="output: must be one of"):
        SynthConfig(output="demosaic")


def test_rgb_rendering_is_opencvs_demosaic_up_to_rounding_ties_inside_the_border():
    """The default rendering vs what the original did (OpenCV's bilinear demosaic of the 8-bit mosaic):
    inside the 1-pixel border they differ only where the bilinear mean is a tie (k + 0.5 codes), which
    darkseg rounds half to even and OpenCV half up (docs/decisions.md "Demosaic")."""
    import cv2

    from darkseg.raw.bayer import demosaic_bilinear, unpack_bayer
    from darkseg.synth.render import RenderOptions, render_packed

    rng = np.random.default_rng(3)
    packed = rng.random((20, 30, 4), dtype=np.float32) * 0.4
    ours = np.rint(render_packed(packed, RenderOptions()) * 255)
    mosaic = np.rint(unpack_bayer(packed, "RGGB") * 255)
    cv = cv2.cvtColor(mosaic.astype(np.uint8), cv2.COLOR_BAYER_BG2RGB).astype(np.float32)
    exact = demosaic_bilinear(mosaic, "RGGB")  # in codes, exact in float32
    differ = (ours != cv)[1:-1, 1:-1]
    assert differ.any() and np.all((exact % 1 == 0.5)[1:-1, 1:-1][differ])
    assert np.abs(ours - cv)[1:-1, 1:-1].max() == 1


@pytest.mark.parametrize("pattern", ["RGGB", "GBRG"])
@pytest.mark.parametrize("quantize", [True, False])
def test_rgb_rendering_of_unit_range_planes_needs_no_final_clip(pattern, quantize):
    """Means of [0, 1] samples and their 8-bit rounding stay in [0, 1]: skipping the clip changes nothing."""
    from darkseg.synth.render import RenderOptions, render_packed

    rng = np.random.default_rng(0)
    packed = rng.choice([0.0, 1.0, np.nextafter(1.0, 0.0), 0.5, 1e-30], (9, 7, 4)).astype(np.float32)
    packed[3:, 3:] = rng.random((6, 4, 4), dtype=np.float32)
    opts = RenderOptions(pattern=pattern, quantize_8bit=quantize)
    skipped = render_packed(packed, opts, in_unit_range=True)
    np.testing.assert_array_equal(skipped, render_packed(packed, opts))
    assert skipped.min() >= 0.0 and skipped.max() <= 1.0
