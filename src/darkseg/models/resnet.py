"""ResNet backbones (18/34/50/101 or any block counts) with optional AWD and SCB, returning C2..C5.

Built on torchvision's ``ResNet`` so that parameter names match torchvision checkpoints
(``conv1``, ``bn1``, ``layer1.0.conv1`` ...). Additions:

* ``style="caffe"``: in bottlenecks the stride of the first block of a stage sits on the 1x1 ``conv1``
  (mmdet/detectron2 caffe style) instead of the 3x3 ``conv2`` (pytorch style). Basic blocks have no 1x1
  conv, so both styles coincide for depth 18/34.
* ``awd=True, awd_mode="replace"`` (the paper's R50 topology): ``AWD(C_in, stride 2)`` runs on the input
  of stages 2-4 and every conv of those stages (including the 1x1 projection shortcut) has stride 1.
  ``awd_mode="prefilter"``: ``AWD(C_in, stride 1)`` before the normal strided stages.
  AWD modules live in ``awd.layer2`` / ``awd.layer3`` / ``awd.layer4``.
* ``scb_stages``: every 3x3 conv of those stages becomes an :class:`~darkseg.models.scb.SCBConv`
  (bottleneck: ``conv2``; basic block: ``conv1`` and ``conv2``).
* ``frozen_bn=True``: every BatchNorm (AWD's included) uses fixed running statistics with a trainable
  affine map (mmdet ``norm_eval=True``, as the paper trains); ``frozen_stages`` freezes the stem
  (``>= 0``) and stages ``1..frozen_stages`` completely; ``bn_requires_grad=False`` also freezes the
  affine maps of the ResNet's own BatchNorm layers (MMDetection's stock ``requires_grad=False``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from .awd import AWD
from .scb import SCBConv

__all__ = ["FrozenBatchNorm2d", "ResNetBody", "STAGE_CHANNELS"]

_LAYERS = {
    18: (BasicBlock, [2, 2, 2, 2]),
    34: (BasicBlock, [3, 4, 6, 3]),
    50: (Bottleneck, [3, 4, 6, 3]),
    101: (Bottleneck, [3, 4, 23, 3]),
}


def STAGE_CHANNELS(depth: int, base_channels: int = 64) -> list[int]:  # noqa: N802 - constant-like helper
    """Output channels of C2..C5 for a ResNet depth and stem width (64 for the standard ResNets)."""
    mult = 1 if depth in (18, 34) else 4
    return [base_channels * (2**i) * mult for i in range(4)]


def _make_stages(
    block: type[nn.Module],
    stage_blocks: list[int],
    base_channels: int,
    norm_layer: type[nn.Module],
) -> list[nn.Sequential]:
    """The four residual stages (torchvision's block classes and names), stride 1 everywhere.

    Stage ``i`` has ``stage_blocks[i]`` blocks of ``base_channels * 2**i`` planes; the first block of a
    stage gets a 1x1 projection shortcut when its input and output widths differ. Strides are placed
    afterwards by :meth:`ResNetBody._set_block_stride`.
    """
    expansion = block.expansion
    inplanes = base_channels
    stages = []
    for i, n in enumerate(stage_blocks):
        planes = base_channels * (2**i)
        blocks = []
        for j in range(n):
            downsample = None
            if j == 0 and inplanes != planes * expansion:
                downsample = nn.Sequential(
                    nn.Conv2d(inplanes, planes * expansion, 1, bias=False), norm_layer(planes * expansion)
                )
            blocks.append(block(inplanes, planes, 1, downsample, norm_layer=norm_layer))
            inplanes = planes * expansion
        stages.append(nn.Sequential(*blocks))
    return stages


def stem_pool(pool: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The stem's 3x3 stride-2 max pooling, in channels-last order on the CPU when no gradient is needed.

    PyTorch's CPU max pooling is vectorised over channels only for channels-last tensors: on the stem's
    64 x 208 x 304 map it takes 33 ms in NCHW order and 8 ms with both layout copies included
    (``docs/benchmarks.md``). A maximum is exact, so the values are bit for bit the same. With a gradient
    (an unfrozen stem) the channels-last backward is slower, so the plain call is used.

    Shapes: ``(B, C, H, W)`` -> ``(B, C, oh, ow)``, contiguous.
    """
    fast = (
        x.device.type == "cpu"
        and isinstance(pool, nn.MaxPool2d)
        and not (torch.is_grad_enabled() and x.requires_grad)
        and not torch.jit.is_tracing()
    )
    if not fast:
        return pool(x)
    return pool(x.contiguous(memory_format=torch.channels_last)).contiguous()


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm with fixed running statistics and a (by default trainable) affine map.

    ``y = (x - running_mean) / sqrt(running_var + eps) * weight + bias``, computed as torchvision's
    ``FrozenBatchNorm2d`` does (same state-dict keys; ``num_batches_tracked`` is accepted and dropped),
    so torchvision checkpoints give bit-identical outputs. Unlike torchvision's, ``weight`` and ``bias``
    are ``nn.Parameter`` s: frozen stages turn their ``requires_grad`` off.

    Shapes: ``(B, C, H, W)`` -> same.
    """

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ):
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.reshape(1, -1, 1, 1)
        b = self.bias.reshape(1, -1, 1, 1)
        rv = self.running_var.reshape(1, -1, 1, 1)
        rm = self.running_mean.reshape(1, -1, 1, 1)
        scale = w * (rv + self.eps).rsqrt()
        bias = b - rm * scale
        return x * scale + bias

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}"


class ResNetBody(nn.Module):
    """ResNet trunk returning ``OrderedDict("0": C2, "1": C3, "2": C4, "3": C5)``.

    Args:
        depth: 18, 34, 50 or 101.
        style: "pytorch" or "caffe" (see module docstring).
        awd: insert AWD before stages 2-4; ``awd_mode`` "replace" | "prefilter".
        scb_stages: stage numbers (1..4) whose 3x3 convs get SCB.
        scb_zero_init: zero-init the SCB 1x1 branch.
        in_channels: 3 or 4 (stem conv input).
        frozen_stages: -1 none; 0 stem; k stem + stages 1..k (``requires_grad=False``, eval mode).
        frozen_bn: fixed BN statistics everywhere (see :class:`FrozenBatchNorm2d`).
        bn_requires_grad: False freezes the affine weight and bias of every BatchNorm of the ResNet itself
            (stem, blocks, shortcuts; MMDetection's ``norm_cfg.requires_grad=False``); AWD's BatchNorm
            keeps training, as in the original, where AWD does not take the backbone's ``norm_cfg``.
        trainable: False freezes the whole trunk.
        stage_blocks: blocks per stage (default: the depth's standard ``[3, 4, 6, 3]`` etc.); any
            positive counts work, e.g. ``[1, 1, 1, 1]`` (``depth`` then only picks the block type:
            basic blocks for 18/34, bottlenecks for 50/101).
        base_channels: stem width (64 for the standard ResNets); stage ``i`` has ``base * 2**i`` planes.

    Shapes: input ``(B, in_channels, H, W)``; outputs at strides 4, 8, 16, 32 with channels
    ``STAGE_CHANNELS(depth)``; e.g. R50 on 416x608 -> 104x152, 52x76, 26x38, 13x19.
    """

    def __init__(
        self,
        depth: int = 50,
        style: str = "pytorch",
        awd: bool = False,
        awd_mode: str = "replace",
        scb_stages: Iterable[int] = (),
        scb_zero_init: bool = False,
        in_channels: int = 3,
        frozen_stages: int = 1,
        frozen_bn: bool = True,
        bn_requires_grad: bool = True,
        trainable: bool = True,
        stage_blocks: Iterable[int] | None = None,
        base_channels: int = 64,
    ) -> None:
        super().__init__()
        if depth not in _LAYERS:
            raise ValueError(f"ResNet depth must be one of {sorted(_LAYERS)}, got {depth}")
        if style not in ("pytorch", "caffe"):
            raise ValueError(f"ResNet style must be 'pytorch' or 'caffe', got {style!r}")
        if awd_mode not in ("replace", "prefilter"):
            raise ValueError(f"awd_mode must be 'replace' or 'prefilter', got {awd_mode!r}")
        block, layers = _LAYERS[depth]
        layers = list(layers if stage_blocks is None else stage_blocks)
        if len(layers) != 4 or any(int(n) < 1 for n in layers):
            raise ValueError(f"stage_blocks must be 4 positive block counts, got {layers}")
        if base_channels < 1:
            raise ValueError(f"base_channels must be positive, got {base_channels}")
        norm_layer = FrozenBatchNorm2d if frozen_bn else nn.BatchNorm2d
        standard = layers == list(_LAYERS[depth][1]) and base_channels == 64
        # the standard widths/depths come from torchvision's ResNet (same initialisation stream as before)
        net = ResNet(block, layers if standard else [1, 1, 1, 1], norm_layer=norm_layer)
        self.depth, self.style, self.awd_mode = depth, style, awd_mode
        self.stage_blocks, self.base_channels = [int(n) for n in layers], int(base_channels)
        self.frozen_stages, self.frozen_bn = frozen_stages, frozen_bn
        self.in_channels = in_channels
        self.scb_stages = tuple(sorted(set(scb_stages)))
        if in_channels != 3 or base_channels != 64:
            net.conv1 = nn.Conv2d(in_channels, base_channels, kernel_size=7, stride=2, padding=3, bias=False)
            nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
            net.bn1 = norm_layer(base_channels)
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        if standard:
            stages = [net.layer1, net.layer2, net.layer3, net.layer4]
        else:
            stages = _make_stages(block, self.stage_blocks, self.base_channels, norm_layer)
            for st in stages:  # torchvision's ResNet initialisation
                for m in st.modules():
                    if isinstance(m, nn.Conv2d):
                        nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        del net
        self.layer1, self.layer2, self.layer3, self.layer4 = stages

        stage_in = [self.base_channels] + STAGE_CHANNELS(depth, self.base_channels)[:3]
        self.awd = nn.ModuleDict()
        for s in (2, 3, 4):
            first = getattr(self, f"layer{s}")[0]
            if awd and awd_mode == "replace":
                self._set_block_stride(first, 1, style)
                self.awd[f"layer{s}"] = AWD(stage_in[s - 1], 3, stride=2, norm_layer=norm_layer)
            else:
                self._set_block_stride(first, 2, style)
                if awd:
                    self.awd[f"layer{s}"] = AWD(stage_in[s - 1], 3, stride=1, norm_layer=norm_layer)

        for s in self.scb_stages:
            for blk in getattr(self, f"layer{s}"):
                names = ["conv2"] if isinstance(blk, Bottleneck) else ["conv1", "conv2"]
                for n in names:
                    setattr(blk, n, SCBConv.from_conv(getattr(blk, n), zero_init=scb_zero_init))

        self._freeze(frozen_stages, trainable)
        if not bn_requires_grad:
            awd_params = {id(p) for p in self.awd.parameters()}
            for m in self.modules():
                if isinstance(m, (FrozenBatchNorm2d, nn.BatchNorm2d)):
                    for p in m.parameters():
                        if id(p) not in awd_params:
                            p.requires_grad_(False)
        self.bn_requires_grad = bn_requires_grad

    @staticmethod
    def _set_block_stride(blk: nn.Module, stride: int, style: str) -> None:
        """Place the stage stride of a stage's first block (torchvision builds it on conv2 / conv1)."""
        if isinstance(blk, Bottleneck):
            on_1x1 = style == "caffe"
            blk.conv1.stride = (stride, stride) if on_1x1 else (1, 1)
            s2 = 1 if on_1x1 else stride
            if isinstance(blk.conv2, SCBConv):
                blk.conv2.set_stride(s2)
            else:
                blk.conv2.stride = (s2, s2)
        else:
            blk.conv1.stride = (stride, stride)
        blk.stride = stride
        if blk.downsample is not None:
            blk.downsample[0].stride = (stride, stride)

    def _frozen_modules(self) -> list[nn.Module]:
        mods: list[nn.Module] = []
        if self.frozen_stages >= 0:
            mods += [self.conv1, self.bn1]
        for s in range(1, self.frozen_stages + 1):
            mods.append(getattr(self, f"layer{s}"))
        return mods

    def _freeze(self, frozen_stages: int, trainable: bool) -> None:
        mods = [self] if not trainable else self._frozen_modules()
        for m in mods:
            for p in m.parameters():
                p.requires_grad_(False)
        self._trainable = trainable

    def train(self, mode: bool = True) -> ResNetBody:
        super().train(mode)
        if mode:  # frozen parts stay in eval mode (matters only for live BatchNorm)
            for m in [self] if not self._trainable else self._frozen_modules():
                m.eval()
        return self

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"ResNetBody expects (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        x = stem_pool(self.maxpool, self.relu(self.bn1(self.conv1(x))))
        out: OrderedDict[str, torch.Tensor] = OrderedDict()
        for i, name in enumerate(("layer1", "layer2", "layer3", "layer4")):
            if name in self.awd:
                x = self.awd[name](x)
            x = getattr(self, name)(x)
            out[str(i)] = x
        return out

    @property
    def out_channels_list(self) -> list[int]:
        return STAGE_CHANNELS(self.depth, self.base_channels)
