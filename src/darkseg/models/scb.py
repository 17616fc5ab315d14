"""SCB: smooth-oriented convolutional block and its re-parameterisation (docs/models.md).

``SCBConv`` is a 3x3 ``nn.Conv2d`` with a parallel linear smoothing branch

    y = conv3x3(u) + A(LLPF(u))

where ``LLPF`` is a depthwise 3x3 filter whose kernel is a softmax over the 9 taps (non-negative,
sum 1: a learnable low-pass filter) and ``A`` a dense 1x1 conv. Everything is linear with the same
stride and zero padding 1, so the block folds into a single 3x3 conv (``SCBConv.fuse``):

    W'[o, i] = W[o, i] + A[o, i] * K[i]          (K indexed by the INPUT channel i)

The original repository's ``utils/reparameter.py`` multiplies by ``K[o]`` instead (docs/decisions.md),
which is exact only while all channel kernels are equal; we use ``K[i]``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LLPF", "SCBConv", "SCB", "fuse_scb", "count_scb"]

# Binomial 3x3 values, used as softmax LOGITS at init (as the original): the effective kernel is near-box.
_BINOMIAL_LOGITS = torch.tensor([[1 / 16, 1 / 8, 1 / 16], [1 / 8, 1 / 4, 1 / 8], [1 / 16, 1 / 8, 1 / 16]])


class LLPF(nn.Module):
    """Learnable low-pass filter: depthwise 3x3 conv with softmax-normalised kernels, zero padding 1.

    Args:
        channels: ``P``.
        stride: ``s``.

    Parameter ``weight``: logits ``(P, 1, 3, 3)``. Effective kernel ``kernel()``: ``(P, 1, 3, 3)``, each
    channel's 9 taps are ``softmax`` of its logits (row-major).

    Shapes: input ``(B, P, H, W)`` -> output ``(B, P, (H-1)//s+1, (W-1)//s+1)``.
    """

    def __init__(self, channels: int, stride: int = 1) -> None:
        super().__init__()
        self.channels = channels
        self.stride = stride
        self.weight = nn.Parameter(_BINOMIAL_LOGITS.expand(channels, 1, 3, 3).clone())

    def kernel(self) -> torch.Tensor:
        """Effective kernels ``(P, 1, 3, 3)``: positive, each sums to 1."""
        p = self.channels
        return torch.softmax(self.weight.view(p, 9), dim=1).view(p, 1, 3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.kernel(), stride=self.stride, padding=1, groups=self.channels)

    def extra_repr(self) -> str:
        return f"{self.channels}, stride={self.stride}"


class SCBConv(nn.Conv2d):
    """A 3x3 convolution with the SCB smoothing branch (a drop-in ``nn.Conv2d``).

    The main 3x3 kernel is this module's own ``weight`` (so its state-dict key is the same as a plain
    conv's: pretrained weights load unchanged); the branch adds ``llpf.weight`` (``(C_in, 1, 3, 3)``
    logits) and ``learnable_conv1.weight`` (``(C_out, C_in, 1, 1)``).

    Args:
        in_channels, out_channels, stride, bias: as ``nn.Conv2d`` (kernel 3, padding 1, dilation 1,
            groups 1 are fixed: the folding rule needs them).
        zero_init: initialise the 1x1 branch to zero so the block starts as the plain conv (an option;
            the paper uses PyTorch's default kaiming-uniform init; docs/decisions.md).

    Shapes: input ``(B, C_in, H, W)`` -> output ``(B, C_out, (H-1)//s+1, (W-1)//s+1)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        bias: bool = False,
        zero_init: bool = False,
    ) -> None:
        super().__init__(in_channels, out_channels, 3, stride=stride, padding=1, bias=bias)
        self.llpf = LLPF(in_channels, stride)
        self.learnable_conv1 = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        if zero_init:
            nn.init.zeros_(self.learnable_conv1.weight)

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, zero_init: bool = False) -> SCBConv:
        """Wrap an existing 3x3 conv (weights copied) with a fresh SCB branch."""
        if (
            conv.kernel_size != (3, 3)
            or conv.padding != (1, 1)
            or conv.dilation != (1, 1)
            or conv.groups != 1
        ):
            raise ValueError(
                f"SCB needs a 3x3 conv with padding 1, dilation 1, groups 1; got kernel {conv.kernel_size}, "
                f"padding {conv.padding}, dilation {conv.dilation}, groups {conv.groups}"
            )
        if conv.stride[0] != conv.stride[1]:
            raise ValueError(f"SCB needs a square stride, got {conv.stride}")
        m = cls(conv.in_channels, conv.out_channels, conv.stride[0], conv.bias is not None, zero_init)
        m = m.to(device=conv.weight.device, dtype=conv.weight.dtype)
        with torch.no_grad():
            m.weight.copy_(conv.weight)
            if conv.bias is not None:
                m.bias.copy_(conv.bias)
        return m

    def set_stride(self, stride: int) -> None:
        """Change the stride of both the 3x3 conv and the smoothing branch."""
        self.stride = (stride, stride)
        self.llpf.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.llpf.stride != self.stride[0]:
            raise RuntimeError(f"SCBConv stride mismatch: conv {self.stride}, llpf {self.llpf.stride}")
        return super().forward(x) + self.learnable_conv1(self.llpf(x))

    @torch.no_grad()
    def fused_weight(self) -> torch.Tensor:
        """Folded 3x3 kernel ``(C_out, C_in, 3, 3)``: ``W + A[o, i] * K[i]``."""
        a = self.learnable_conv1.weight[:, :, 0, 0]  # (C_out, C_in)
        k = self.llpf.kernel()[:, 0]  # (C_in, 3, 3)
        return self.weight + a[:, :, None, None] * k[None]

    @torch.no_grad()
    def fuse(self) -> nn.Conv2d:
        """A plain ``nn.Conv2d`` computing exactly this block's output (up to float rounding)."""
        conv = nn.Conv2d(
            self.in_channels, self.out_channels, 3, stride=self.stride, padding=1, bias=self.bias is not None
        ).to(device=self.weight.device, dtype=self.weight.dtype)
        conv.weight.copy_(self.fused_weight())
        if self.bias is not None:
            conv.bias.copy_(self.bias)
        conv.weight.requires_grad_(self.weight.requires_grad)
        return conv


SCB = SCBConv


def fuse_scb(module: nn.Module) -> int:
    """Replace every :class:`SCBConv` inside ``module`` by its folded ``nn.Conv2d``, in place.

    Returns the number of blocks folded. (A bare ``SCBConv`` passed as ``module`` cannot replace
    itself: call ``module.fuse()`` instead.)
    """
    n = 0
    for name, child in list(module.named_children()):
        if isinstance(child, SCBConv):
            setattr(module, name, child.fuse())
            n += 1
        else:
            n += fuse_scb(child)
    return n


def count_scb(module: nn.Module) -> int:
    """Number of :class:`SCBConv` blocks inside ``module``."""
    return sum(isinstance(m, SCBConv) for m in module.modules())
