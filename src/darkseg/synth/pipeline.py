"""sRGB -> (clean, noisy) low-light RAW renderings: :class:`SynthConfig` + :class:`LowLightSynthesizer`.

Per image: sample unprocess metadata and noise parameters, unprocess to linear camera RGB, mosaic to
the camera's CFA and pack (R, G1, B, G2), add noise to a copy, render both
(:func:`darkseg.synth.render.render_packed`).
The clean rendering keeps the scene's (linear, un-brightened) level; the noisy one has the same mean
level (``y / ratio`` then ``* ratio``) with the noise of a ``ratio``-times shorter exposure.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from darkseg.errors import ConfigError
from darkseg.raw.bayer import pattern_offsets
from darkseg.synth.noise import NAMED_MODELS, NoiseModel, NoiseParams, build_noise_model, load_camera
from darkseg.synth.render import OUTPUTS, RenderOptions, render_packed, sensor_cells
from darkseg.synth.unprocess import (
    UnprocessParams,
    linearize_table,
    sample_unprocess_params,
    unprocess,
    unprocess_packed,
)
from darkseg.utils.typed_config import Settings

__all__ = ["SynthConfig", "SynthParams", "LowLightSynthesizer"]


@dataclass
class SynthConfig(Settings):
    """Low-light synthesis settings (YAML maps 1:1 onto the fields; bad values raise ``ConfigError``).

    Attributes:
        camera: shipped profile name (``darkseg.synth.available_cameras()``) or a profile JSON path.
        noise_model: ``"PGRU"`` (LIS), ``"PG"`` (Poisson + Gaussian read) or ``"none"``.
        ratio_range: exposure ratio range; sampled uniformly per image (LIS: 10-100).
        output: ``"rgb"`` 3 channels, demosaiced, full resolution (as the paper trains);
            ``"binned"`` 3 channels, full resolution, rendered like the real LIS RAW PNGs (2x2 binning +
            bilinear 2x upsampling, docs/decisions.md D8) but with neighbouring pixels' noise
            correlated; ``"sensor"`` 3 channels, full resolution, with the noise statistics of the real
            LIS RAW test images (per-pixel variance, no correlation between neighbours: each pixel is a
            bilinear mix of 2x2 binned cells of a sensor with twice the resolution, like the
            0.5x-resized binned full-sensor PNGs; 16 noise samples per pixel, so 16x the noise work of
            ``"rgb"``); or ``"packed"`` 4 channels (R, G1, B, G2) at half resolution (H, W even).
        quantize_8bit: round the mosaic and the rendering to 8 bits like LIS (decisions D3).
        legacy_swap_rb: return B, G, R like the original synthetic images (decisions D1); 3-channel only.
        per_pixel_quantisation: ``U`` noise per pixel instead of one scalar per image (decisions D4).
        ccm: ``"calibrated"`` (LIS cam2rgb) or ``"random"`` (Brooks et al. random CCM per image).
        cfa_pattern: CFA of the synthetic sensor; ``None`` = the camera profile's.
        profile: which noise fit of the camera.
        render_wb, render_brighten, render_ccm, render_gamma, render_tone: optional ISP steps of the
            3-channel renderings (all off = LIS's dim linear camera RGB).
    """

    camera: str = "CanonEOS5D4"
    noise_model: str = "PGRU"
    ratio_range: tuple[float, float] = (10.0, 100.0)
    output: str = "rgb"
    quantize_8bit: bool = True
    legacy_swap_rb: bool = False
    per_pixel_quantisation: bool = False
    ccm: str = "calibrated"
    cfa_pattern: str | None = None
    profile: str = "Profile-1"
    render_wb: bool = False
    render_brighten: bool = False
    render_ccm: bool = False
    render_gamma: bool = False
    render_tone: bool = False

    def __post_init__(self) -> None:
        self.ratio_range = tuple(float(v) for v in self.ratio_range)  # type: ignore[assignment]
        super().__post_init__()

    def validate(self) -> None:
        """Every value, the camera profile included (a shipped name or a readable profile JSON), so that a
        bad setting fails where it is given, not when synthesis starts."""
        if len(self.ratio_range) != 2 or not 0 < self.ratio_range[0] <= self.ratio_range[1]:
            raise self.invalid("ratio_range", "need [lo, hi] with 0 < lo <= hi")
        if self.output not in OUTPUTS:
            raise self.invalid("output", f"must be one of {OUTPUTS}")
        if self.noise_model not in NAMED_MODELS:
            raise self.invalid("noise_model", f"must be one of {sorted(NAMED_MODELS)}")
        if self.ccm not in ("calibrated", "random"):
            raise self.invalid("ccm", "must be 'calibrated' or 'random'")
        if self.legacy_swap_rb and self.output == "packed":
            raise self.invalid(
                "legacy_swap_rb", "applies to the 3-channel outputs ('rgb', 'binned', 'sensor') only"
            )
        for key, check in (("cfa_pattern", pattern_offsets), ("camera", load_camera)):
            if getattr(self, key) is not None:
                try:
                    check(getattr(self, key))
                except (FileNotFoundError, ValueError) as exc:
                    raise ConfigError(str(exc), key) from None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ratio_range"] = list(self.ratio_range)
        return d


@dataclass
class SynthParams:
    """Everything sampled for one image (NumPy path) or a batch (torch path)."""

    unprocess: UnprocessParams
    noise: NoiseParams


class LowLightSynthesizer:
    """Turns sRGB images into (clean, noisy) low-light RAW renderings; see :class:`SynthConfig`.

    Call with a torch tensor (``(B, 3, H, W)`` or ``(3, H, W)``, RGB in ``[0, 1]``, any device) and an
    optional ``torch.Generator`` on that device; or use :meth:`numpy` for one ``(H, W, 3)`` array and a
    ``numpy.random.Generator``. Parameters are sampled independently per image.
    """

    def __init__(self, cfg: SynthConfig | None = None) -> None:
        self.cfg = cfg or SynthConfig()
        self.noise: NoiseModel = build_noise_model(
            self.cfg.noise_model,
            self.cfg.camera,
            ratio_range=self.cfg.ratio_range,
            profile=self.cfg.profile,
            per_pixel_quantisation=self.cfg.per_pixel_quantisation,
        )
        self.camera = self.noise.camera
        self.pattern = self.cfg.cfa_pattern or self.camera.cfa_pattern
        pattern_offsets(self.pattern)
        c = self.cfg
        self.render_options = RenderOptions(
            output=c.output,
            pattern=self.pattern,
            quantize_8bit=c.quantize_8bit,
            white_balance=c.render_wb,
            brighten=c.render_brighten,
            ccm=c.render_ccm,
            gamma=c.render_gamma,
            tone=c.render_tone,
            legacy_swap_rb=c.legacy_swap_rb,
        )
        #: linear value of every 8-bit sRGB code: how :meth:`numpy` linearises ``uint8`` images
        self.srgb8_table = linearize_table()

    def __repr__(self) -> str:
        return f"LowLightSynthesizer({self.cfg})"

    # ------------------------------------------------------------------------------- helpers
    def _check_size(self, h: int, w: int) -> None:
        if h < 2 or w < 2:
            raise ValueError(f"image too small for a Bayer mosaic: {h}x{w}")
        if self.cfg.output == "packed" and (h % 2 or w % 2):
            raise ValueError(
                f"output='packed' needs even height and width, got {h}x{w}; crop or pad the image first"
            )

    # ------------------------------------------------------------------------------- numpy
    def sample_numpy(self, rng: np.random.Generator) -> SynthParams:
        """One image's parameters (unprocess metadata first, then noise parameters)."""
        return SynthParams(sample_unprocess_params(rng, self.cfg.ccm), self.noise.sample_params(rng))

    def numpy(
        self, srgb: np.ndarray, rng: np.random.Generator, params: SynthParams | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """One image: ``(H, W, 3)`` RGB float in ``[0, 1]`` (uint8 also accepted) -> ``(clean, noisy)``.

        Outputs float32 in ``[0, 1]``: ``(H, W, 3)`` for ``"rgb"`` (odd sizes are edge-padded to even
        internally and cropped back; also ``"binned"``, ``"sensor"``), ``(H/2, W/2, 4)`` for ``"packed"``.
        A ``uint8`` image gives the same bits as ``srgb.astype(np.float32) / 255`` (its codes are
        linearised by table lookup, :attr:`srgb8_table`).
        """
        x = np.asarray(srgb)
        if x.ndim != 3 or x.shape[2] != 3:
            raise ValueError(f"expected an (H, W, 3) RGB image, got shape {x.shape}")
        if x.dtype != np.uint8:
            x = x.astype(np.float32, copy=False)
        h, w = x.shape[:2]
        self._check_size(h, w)
        if h % 2 or w % 2:
            x = np.pad(x, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        p = params if params is not None else self.sample_numpy(rng)
        if self.cfg.output == "sensor":
            clean = sensor_cells(unprocess(x, p.unprocess, self.srgb8_table))
        else:
            clean = unprocess_packed(x, p.unprocess, self.pattern, self.srgb8_table)
        noisy = self.noise.apply(clean, p.noise, rng)
        # both are clipped to [0, 1] by unprocessing / the noise model
        out_c = render_packed(clean, self.render_options, p.unprocess, in_unit_range=True)
        out_n = render_packed(noisy, self.render_options, p.unprocess, in_unit_range=True)
        if self.cfg.output != "packed":
            out_c, out_n = out_c[:h, :w], out_n[:h, :w]
        return np.ascontiguousarray(out_c), np.ascontiguousarray(out_n)

    # ------------------------------------------------------------------------------- torch
    def sample_torch(self, batch: int, generator: torch.Generator, device: torch.device) -> SynthParams:
        """``batch`` images' parameters as tensors on ``device``."""
        return SynthParams(
            sample_unprocess_params(generator, self.cfg.ccm, batch, device),
            self.noise.sample_params(generator, batch, device),
        )

    @staticmethod
    def stack_params(params: list[SynthParams], device: torch.device | str = "cpu") -> SynthParams:
        """Stack NumPy-path parameters of several images into torch batch parameters."""

        def col(get, dtype=torch.float32):
            vals = [get(p) for p in params]
            if any(v is None for v in vals):
                return None
            return torch.as_tensor(
                np.stack([np.asarray(v, dtype=np.float64) for v in vals]), dtype=dtype, device=device
            )

        u = UnprocessParams(
            *(
                col(lambda p, k=k: getattr(p.unprocess, k))
                for k in ("rgb2cam", "cam2rgb", "rgb_gain", "red_gain", "blue_gain")
            )
        )
        n = NoiseParams(
            *(
                col(lambda p, k=k: getattr(p.noise, k))
                for k in ("K", "ratio", "lam", "g_scale", "G_scale", "R_scale", "quant", "color_bias")
            )
        )
        return SynthParams(u, n)

    def synth(
        self, srgb: torch.Tensor, generator: torch.Generator | None = None, params: SynthParams | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Batched synthesis.

        Args:
            srgb: ``(B, 3, H, W)`` or ``(3, H, W)`` RGB in ``[0, 1]`` on any device.
            generator: ``torch.Generator`` on ``srgb``'s device; ``None`` = a fresh, non-reproducibly
                seeded one.
            params: pre-sampled parameters (``sample_torch`` / ``stack_params``); sampled if ``None``.

        Returns:
            ``(clean, noisy)`` float32 in ``[0, 1]`` with the input's batch-ness: ``(B, 3, H, W)`` for
            ``"rgb"``/``"binned"``/``"sensor"``, ``(B, 4, H/2, W/2)`` for ``"packed"``.
        """
        if not isinstance(srgb, torch.Tensor):
            raise TypeError(
                f"synth expects a torch tensor, got {type(srgb).__name__}; use .numpy() for arrays"
            )
        if not srgb.is_floating_point():
            raise TypeError(f"synth expects a float tensor in [0, 1], got {srgb.dtype} (divide uint8 by 255)")
        single = srgb.ndim == 3
        x = srgb.unsqueeze(0) if single else srgb
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected (B, 3, H, W) or (3, H, W) RGB, got {tuple(srgb.shape)}")
        x = x.float()
        h, w = x.shape[-2:]
        self._check_size(h, w)
        if h % 2 or w % 2:
            x = F.pad(x, (0, w % 2, 0, h % 2), mode="replicate")
        if generator is None:
            generator = torch.Generator(device=x.device)
            generator.seed()
        elif generator.device.type != x.device.type:
            raise ValueError(f"generator is on {generator.device}, images on {x.device}")
        p = params if params is not None else self.sample_torch(x.shape[0], generator, x.device)
        bsz = x.shape[0]
        step = bsz if x.device.type != "cpu" else max(1, self.cpu_chunk)
        outs = [
            self._run_torch(x[i : i + step], _slice_params(p, slice(i, i + step)), generator)
            for i in range(0, bsz, step)
        ]
        out_c = torch.cat([o[0] for o in outs]) if len(outs) > 1 else outs[0][0]
        out_n = torch.cat([o[1] for o in outs]) if len(outs) > 1 else outs[0][1]
        if self.cfg.output != "packed":
            out_c, out_n = out_c[..., :h, :w], out_n[..., :h, :w]
        if single:
            out_c, out_n = out_c[0], out_n[0]
        return out_c.contiguous(), out_n.contiguous()

    __call__ = synth

    #: on CPU, batches are processed this many images at a time (same results for a given batch and
    #: seed; keeps the working set in cache and avoids fresh page-faulting allocations of huge tensors)
    cpu_chunk: int = 2

    def _run_torch(
        self, x: torch.Tensor, p: SynthParams, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.cfg.output == "sensor":
            clean = sensor_cells(unprocess(x, p.unprocess))
        else:
            clean = unprocess_packed(x, p.unprocess, self.pattern)
        noisy = self.noise.apply(clean, p.noise, generator)
        # render clean and noisy in one batched call
        u = p.unprocess
        up2 = UnprocessParams(
            *(torch.cat([v, v]) for v in (u.rgb2cam, u.cam2rgb, u.rgb_gain, u.red_gain, u.blue_gain))
        )
        out_c, out_n = render_packed(torch.cat([clean, noisy]), self.render_options, up2).chunk(2)
        return out_c, out_n

    @property
    def output_channels(self) -> int:
        return 4 if self.cfg.output == "packed" else 3

    @property
    def output_scale(self) -> float:
        """Output size / input size (0.5 for packed)."""
        return 0.5 if self.cfg.output == "packed" else 1.0


def _slice_params(p: SynthParams, sl: slice) -> SynthParams:
    """The parameters of images ``sl`` of a torch batch."""
    u = UnprocessParams(
        *(
            v[sl]
            for v in (
                p.unprocess.rgb2cam,
                p.unprocess.cam2rgb,
                p.unprocess.rgb_gain,
                p.unprocess.red_gain,
                p.unprocess.blue_gain,
            )
        )
    )
    n = p.noise
    nn = NoiseParams(
        *(
            None if v is None else v[sl]
            for v in (n.K, n.ratio, n.lam, n.g_scale, n.G_scale, n.R_scale, n.quant, n.color_bias)
        )
    )
    return SynthParams(u, nn)
