"""ConvNeXt backbone with optional AWD and SCB (the original LIS ``ConvNeXtAdaDSmoothPrior``).

A re-implementation of the mmcls ConvNeXt used by MMDetection 2.x, with the two LIS additions, that
loads the original backbone weights (``backbone.*`` with the prefix removed) with ``strict=True`` and
reproduces its outputs up to float32 rounding. Forward, for stage ``i = 0..3``:

1. ``i >= 1`` and ``awd``: ``x = AdaD[str(i)](x)`` -- AWD with **stride 1** (an adaptive 3x3 low-pass
   pre-filter, reflect padding) on the previous stage's output *before* its out-norm, with a live
   ``nn.BatchNorm2d`` (eps 1e-5) on the logit branch.
2. ``x = downsample_layers[i](x)``: layer 0 = ``Conv2d(in, C0, 4, stride 4)`` (bias) then a channel
   LayerNorm with eps 1e-6; layers 1-3 = channel LayerNorm with eps **1e-5** (mmcls builds these with
   the ``LayerNorm`` default, not the 1e-6 of every other norm) then ``Conv2d(C_{i-1}, C_i, 2, stride 2)``
   (bias).
3. ``x = stages[i](x)`` (the blocks in order).
4. output ``C_{i+2} = norm{i}(x)`` (channel LayerNorm, eps 1e-6); ``x`` itself goes on un-normalised.

Block (``stages.i.j``, :class:`ConvNeXtBlock`): ``y = depthwise_conv(x)`` (7x7, pad 3, groups C, bias),
plus ``learnable_conv1(llpf(x))`` with SCB; LayerNorm (eps 1e-6); per pixel
``y = W2 GELU(W1 y + b1) + b2`` with ``pointwise_conv1`` / ``pointwise_conv2`` ``nn.Linear`` layers
(C -> 4C -> C, weights stored ``(out, in)``) and exact (erf) GELU; ``y = gamma * y`` (layer scale, a
per-channel parameter); ``x + drop_path(y)``.

State-dict keys (ConvNeXt-T AWD+SCB: 246 entries, 31,279,200 parameters): ``downsample_layers.i.j.*``,
``stages.i.j.{gamma, depthwise_conv.*, norm.*, pointwise_conv1.*, pointwise_conv2.*, llpf.weight,
learnable_conv1.weight}``, ``norm0..3.*``, ``AdaD.{1,2,3}.{weight_net.0.weight, weight_net.1.* (BatchNorm),
channel_net.1.weight, channel_net.3.weight}``.

The SCB branch of a ConvNeXt block cannot be folded away: ``learnable_conv1`` mixes channels (dense
1x1, C -> C) while the main conv is depthwise (7x7, groups C), so their sum is not a depthwise conv;
folding it would need a dense 7x7 C x C kernel. There is no ``fuse`` for this backbone.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import stochastic_depth

from .awd import AWD
from .scb import LLPF

__all__ = ["CONVNEXT_ARCHS", "ConvNeXtBlock", "ConvNeXtBody", "LayerNorm2d"]

#: mmcls ConvNeXt architectures: name -> (depths, dims).
CONVNEXT_ARCHS: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "tiny": ((3, 3, 9, 3), (96, 192, 384, 768)),
    "small": ((3, 3, 27, 3), (96, 192, 384, 768)),
    "base": ((3, 3, 27, 3), (128, 256, 512, 1024)),
    "large": ((3, 3, 27, 3), (192, 384, 768, 1536)),
    "xlarge": ((3, 3, 27, 3), (256, 512, 1024, 2048)),
}


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of every pixel of a ``(B, C, H, W)`` tensor.

    ``y = (x - mean_C(x)) / sqrt(var_C(x) + eps) * weight + bias`` with the biased variance, computed
    as mmcls does (permute to channels-last, ``F.layer_norm``, permute back), which gives the same
    rounding as the original. Parameters ``weight``, ``bias``: ``(C,)``.

    Shapes: ``(B, C, H, W)`` -> same.
    """

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__(num_channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"LayerNorm2d expects (B, C, H, W), got {tuple(x.shape)}")
        y = F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps)
        return y.permute(0, 3, 1, 2)


class ConvNeXtBlock(nn.Module):
    """One ConvNeXt block, optionally with the SCB smoothing branch beside the depthwise conv.

    Args:
        channels: ``C``.
        scb: add ``llpf`` (softmax-normalised depthwise 3x3, zero pad 1) and ``learnable_conv1``
            (dense 1x1, C -> C, no bias): ``y = depthwise_conv(x) + learnable_conv1(llpf(x))``.
        layer_scale_init_value: initial value of ``gamma`` (``(C,)``); ``<= 0`` means no layer scale
            (no ``gamma`` key), as in mmcls.
        drop_path: stochastic-depth probability of the residual branch (training only).
        mlp_ratio: hidden width ``int(mlp_ratio * C)``.

    Shapes: ``(B, C, H, W)`` -> same.
    """

    def __init__(
        self,
        channels: int,
        scb: bool = True,
        layer_scale_init_value: float = 1.0,
        drop_path: float = 0.0,
        mlp_ratio: float = 4.0,
    ) -> None:
        super().__init__()
        if not 0.0 <= drop_path < 1.0:
            raise ValueError(f"ConvNeXtBlock: drop_path must be in [0, 1), got {drop_path}")
        self.channels = channels
        self.drop_path = drop_path
        self.depthwise_conv = nn.Conv2d(channels, channels, 7, padding=3, groups=channels)
        self.norm = LayerNorm2d(channels, eps=1e-6)
        hidden = int(mlp_ratio * channels)
        self.pointwise_conv1 = nn.Linear(channels, hidden)
        self.pointwise_conv2 = nn.Linear(hidden, channels)
        if layer_scale_init_value > 0:
            self.gamma = nn.Parameter(torch.full((channels,), float(layer_scale_init_value)))
        else:
            self.gamma = None
        if scb:
            self.llpf = LLPF(channels, stride=1)
            self.learnable_conv1 = nn.Conv2d(channels, channels, 1, bias=False)
        else:
            self.llpf = None
            self.learnable_conv1 = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.depthwise_conv(x)
        if self.llpf is not None:
            y = y + self.learnable_conv1(self.llpf(x))
        y = self.norm(y).permute(0, 2, 3, 1)  # (B, H, W, C)
        y = self.pointwise_conv2(F.gelu(self.pointwise_conv1(y)))
        y = y.permute(0, 3, 1, 2)  # (B, C, H, W)
        if self.gamma is not None:
            y = y * self.gamma.view(1, -1, 1, 1)
        if self.drop_path > 0.0 and self.training:
            y = stochastic_depth(y, self.drop_path, "row", training=True)
        return x + y

    def extra_repr(self) -> str:
        return f"{self.channels}, scb={self.llpf is not None}, drop_path={self.drop_path:g}"


class ConvNeXtBody(nn.Module):
    """ConvNeXt trunk with optional AWD and SCB, returning ``OrderedDict("0": C2, ..., "3": C5)``.

    Args:
        depths: blocks per stage (ConvNeXt-T: 3, 3, 9, 3).
        dims: channels per stage (ConvNeXt-T: 96, 192, 384, 768).
        in_channels: channels of the input image (the stem conv's input).
        awd: AWD (stride 1, ``AdaD.1..3``) on the input of stages 1-3.
        scb: SCB branch in every block.
        layer_scale_init_value: initial ``gamma`` of every block (``<= 0``: no layer scale).
        drop_path_rate: stochastic depth of the last block; block ``k`` of ``n = sum(depths)`` (counted
            across stages) uses ``drop_path_rate * k / (n - 1)`` (``torch.linspace``, as mmcls).
            Identity in eval mode.
        frozen_stages: number of leading stages frozen (mmcls meaning): stage ``i < frozen_stages`` has
            ``downsample_layers.i`` and ``stages.i`` with ``requires_grad=False`` and kept in eval mode;
            ``-1`` and ``0`` freeze nothing. (The out-norms and AWD modules are never frozen.)

    The AWD logit branch uses a plain ``nn.BatchNorm2d`` (eps 1e-5), as the original: batch statistics
    in train mode (the LIS ConvNeXt config sets no ``norm_eval``), running statistics in eval mode.
    AWD at stride 1 on full-resolution maps is not cheap: on a 416x608 image ``AdaD.1`` (96 ch at
    104x152) costs more than one ConvNeXt block of stage 0.

    Initialisation: the ConvNeXt convs and linears get mmcls's truncated normal (std 0.02, bias 0);
    AWD and SCB modules keep PyTorch's defaults (``llpf.weight`` = binomial logits), as in the original.

    Shapes: input ``(B, in_channels, H, W)``; outputs at strides 4, 8, 16, 32 with channels ``dims``;
    ``H`` and ``W`` should be multiples of 32 (the stem and downsampling convs drop remainders); AWD
    needs at least 2x2 at every stage. E.g. ConvNeXt-T on 416x608 -> (96, 104, 152), (192, 52, 76),
    (384, 26, 38), (768, 13, 19).
    """

    def __init__(
        self,
        depths: Sequence[int] = (3, 3, 9, 3),
        dims: Sequence[int] = (96, 192, 384, 768),
        in_channels: int = 3,
        awd: bool = True,
        scb: bool = True,
        layer_scale_init_value: float = 1.0,
        drop_path_rate: float = 0.0,
        frozen_stages: int = -1,
    ) -> None:
        super().__init__()
        depths, dims = tuple(int(d) for d in depths), tuple(int(c) for c in dims)
        if len(depths) != 4 or len(dims) != 4 or min(depths) < 1 or min(dims) < 1:
            raise ValueError(f"ConvNeXtBody needs 4 stages with positive depths/dims, got {depths}, {dims}")
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {drop_path_rate}")
        if not -1 <= frozen_stages <= 4:
            raise ValueError(f"frozen_stages must be in -1..4, got {frozen_stages}")
        self.depths, self.dims = depths, dims
        self.in_channels = in_channels
        self.awd, self.scb = awd, scb
        self.frozen_stages = frozen_stages

        self.downsample_layers = nn.ModuleList(
            [nn.Sequential(nn.Conv2d(in_channels, dims[0], 4, stride=4), LayerNorm2d(dims[0], eps=1e-6))]
        )
        for i in range(1, 4):
            norm = LayerNorm2d(dims[i - 1], eps=1e-5)
            self.downsample_layers.append(nn.Sequential(norm, nn.Conv2d(dims[i - 1], dims[i], 2, stride=2)))
        rates = [r.item() for r in torch.linspace(0, drop_path_rate, sum(depths))]
        self.stages = nn.ModuleList()
        k = 0
        for i in range(4):
            blocks = [
                ConvNeXtBlock(dims[i], scb, layer_scale_init_value, rates[k + j]) for j in range(depths[i])
            ]
            k += depths[i]
            self.stages.append(nn.Sequential(*blocks))
        for i in range(4):
            self.add_module(f"norm{i}", LayerNorm2d(dims[i], eps=1e-6))
        self.AdaD = nn.ModuleDict()  # the original's key, keys "1".."3"
        if awd:
            for i in range(1, 4):
                self.AdaD[str(i)] = AWD(dims[i - 1], kernel_size=3, stride=1, norm_layer=nn.BatchNorm2d)

        self._init_convnext_weights()
        for i in range(max(frozen_stages, 0)):
            for p in [*self.downsample_layers[i].parameters(), *self.stages[i].parameters()]:
                p.requires_grad_(False)

    def _init_convnext_weights(self) -> None:
        """mmcls init of the ConvNeXt layers: truncated normal (std 0.02) weights, zero biases."""
        layers: list[nn.Module] = [dl[0] if i == 0 else dl[1] for i, dl in enumerate(self.downsample_layers)]
        for stage in self.stages:
            for blk in stage:
                layers += [blk.depthwise_conv, blk.pointwise_conv1, blk.pointwise_conv2]
        for m in layers:
            nn.init.trunc_normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)

    def train(self, mode: bool = True) -> ConvNeXtBody:
        super().train(mode)
        if mode:
            for i in range(max(self.frozen_stages, 0)):
                self.downsample_layers[i].eval()
                self.stages[i].eval()
        return self

    def _run(self, x: torch.Tensor, record: dict[str, torch.Tensor] | None) -> OrderedDict[str, torch.Tensor]:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"ConvNeXtBody expects (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        out: OrderedDict[str, torch.Tensor] = OrderedDict()
        for i in range(4):
            if str(i) in self.AdaD:
                x = self.AdaD[str(i)](x)
                if record is not None:
                    record[f"adad/{i}"] = x
            x = self.downsample_layers[i](x)
            if record is not None:
                record[f"convnext_downsample/{i}"] = x
            x = self.stages[i](x)
            if record is not None:
                record[f"convnext_stage/{i}"] = x
            out[str(i)] = getattr(self, f"norm{i}")(x).contiguous()
            if record is not None:
                record[f"backbone/{i}"] = out[str(i)]
        return out

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        """``(B, in_channels, H, W)`` -> ``OrderedDict("0": C2, "1": C3, "2": C4, "3": C5)``."""
        return self._run(x, None)

    def forward_intermediates(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every stage boundary of one forward pass, keyed like the LIS reference fixture.

        Keys (``i = 0..3``): ``adad/i`` (``i >= 1``, with AWD: the AWD output, input of
        ``downsample_layers.i``), ``convnext_downsample/i`` (output of ``downsample_layers.i``),
        ``convnext_stage/i`` (output of ``stages.i``, before the out-norm), ``backbone/i`` (``C_{i+2}``,
        the same tensor as ``forward(x)[str(i)]``). Shapes ``(B, dims[i], H / 2^(i+2), W / 2^(i+2))``.
        """
        record: dict[str, torch.Tensor] = {}
        self._run(x, record)
        return record

    @property
    def out_channels_list(self) -> list[int]:
        return list(self.dims)
