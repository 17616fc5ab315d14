"""AWD: adaptive weighted downsampling (the original code's ``AdaDConv``; docs/models.md).

Every output element is a content-adaptive convex combination of the 3x3 window around its sampling
point, per channel: an adaptive low-pass filter that replaces strided sampling.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["AWD", "window_logits"]


def _windows(xp: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int], out: tuple[int, int]):
    """The ``kh*kw`` strided window views of a padded ``(B, C, Hp, Wp)`` map, row-major tap order (the
    order of ``F.unfold`` and of AWD's logit channels); each ``(B, C, oh, ow)``."""
    (kh, kw), (sh, sw), (oh, ow) = kernel, stride, out
    return [
        xp[:, :, dy : dy + sh * (oh - 1) + 1 : sh, dx : dx + sw * (ow - 1) + 1 : sw]
        for dy in range(kh)
        for dx in range(kw)
    ]


def _stacked_windows(x: torch.Tensor, kernel, stride, padding, out) -> torch.Tensor:
    """The :func:`_windows` of ``x (B, g, H, W)`` zero-padded by ``padding``, stacked and flattened:
    ``(B, g, kh*kw, oh*ow)`` (a copy)."""
    (ph, pw), (b, g) = padding, x.shape[:2]
    taps = torch.stack(_windows(F.pad(x, (pw, pw, ph, ph)), kernel, stride, out), dim=2)
    return taps.view(b, g, kernel[0] * kernel[1], -1)


class _WindowLogits(torch.autograd.Function):
    """:func:`window_logits` with a gradient: the windows are stacked (not saved: recomputed in the
    backward pass, so memory is that of the convolution), and the input gradient is accumulated into one
    zero-filled padded map instead of one per window."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding):  # type: ignore[override]
        b, g, h, w = x.shape
        kernel = tuple(weight.shape[-2:])
        m, kk = weight.shape[0] // g, kernel[0] * kernel[1]
        (sh, sw), (ph, pw) = stride, padding
        out = ((h + 2 * ph - kernel[0]) // sh + 1, (w + 2 * pw - kernel[1]) // sw + 1)
        ctx.geom = (kernel, stride, padding, out)
        ctx.has_bias = bias is not None
        ctx.save_for_backward(x, weight)
        taps = _stacked_windows(x, kernel, stride, padding, out)
        z = torch.matmul(weight.view(1, g, m, kk), taps)  # (B, g, m, oh*ow)
        if bias is not None:
            z.add_(bias.view(1, g, m, 1))
        return z.view(b, g * m, *out)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        x, weight = ctx.saved_tensors
        kernel, stride, padding, out = ctx.geom
        ph, pw = padding
        b, g, h, w = x.shape
        m, kk = weight.shape[0] // g, kernel[0] * kernel[1]
        gz = grad.reshape(b, g, m, -1)
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[1]:
            taps = _stacked_windows(x, kernel, stride, padding, out)
            grad_w = torch.matmul(gz, taps.transpose(-1, -2)).sum(0).view_as(weight)
        if ctx.needs_input_grad[0]:
            gtaps = torch.matmul(weight.view(1, g, m, kk).transpose(-1, -2), gz)  # (B, g, kk, oh*ow)
            gxp = x.new_zeros(b, g, h + 2 * ph, w + 2 * pw)
            for t, view in enumerate(_windows(gxp, kernel, stride, out)):
                view.add_(gtaps[:, :, t].view(b, g, *out))
            grad_x = gxp[:, :, ph : ph + h, pw : pw + w]
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = gz.sum((0, 3)).reshape(-1)
        return grad_x, grad_w, grad_b, None, None


def window_logits(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: int,
    groups: int,
) -> torch.Tensor:
    """``F.conv2d(x, weight, bias, stride, padding, dilation, groups)`` for AWD's logit convolution.

    AWD's logit conv has one input channel per group and ``m = k*k`` outputs per group. When the input
    needs a gradient on the CPU it is computed here as a batched matrix product instead: the ``k*k``
    zero-padded, strided windows of each channel are stacked to ``(B, g, k*k, oh*ow)`` and multiplied by
    the per-group ``(m, k*k)`` weights; the same sums of nine products. The CPU's grouped-convolution
    backward for this shape runs at 1-2 GFLOP/s; forward + backward of 2 x 512 channels at 52 x 76
    take 277 ms as a convolution and 201 ms here (``docs/benchmarks.md``). When only the weights need
    a gradient (AWD after a frozen stage) or none does, the convolution is as fast or faster and is used;
    on CUDA, cuDNN's grouped convolution is used.

    Shapes: ``x (B, g, H, W)``, ``weight (g*m, 1, kh, kw)``, ``bias (g*m,)`` -> ``(B, g*m, oh, ow)``.
    """
    input_grad = torch.is_grad_enabled() and x.requires_grad
    if (
        not input_grad
        or x.device.type != "cpu"
        or x.shape[1] != groups
        or dilation != 1
        or torch.jit.is_tracing()
    ):
        return F.conv2d(x, weight, bias, stride, padding, dilation, groups)
    return _WindowLogits.apply(x, weight, bias, tuple(stride), tuple(padding))


class AWD(nn.Module):
    """Adaptive weighted downsampling.

    Args:
        in_channels: ``C``; the output has the same number of channels.
        kernel_size: window size ``k`` (3 in the paper).
        stride: ``s``; 2 replaces a strided conv / pooling, 1 makes AWD an adaptive pre-filter.
        groups: number of logit groups ``g`` (``C`` divisible by ``g``); ``None`` = ``C`` (fully per
            channel, the only setting the paper uses).
        use_channel: multiply the logits by a per-(image, channel) factor from a global-pool MLP
            (``C -> C//4 -> C``, no sigmoid).
        norm_layer: BatchNorm class for the logit branch; in ResNets with frozen BN statistics pass a
            frozen-statistics BN: the paper trains with every BatchNorm in eval mode (``norm_eval``),
            the AWD logit BN included (docs/decisions.md).

    Shapes:
        input ``(B, C, H, W)`` float, ``H, W >= 2`` (reflect padding);
        output ``(B, C, oh, ow)`` with ``oh = (H - 1) // s + 1``, ``ow = (W - 1) // s + 1``.

    Parameter names: ``weight_net.0`` (depthwise-style logit conv, ``(g*k*k, C/g, k, k)``),
    ``weight_net.1`` (BN over ``g*k*k`` logits), ``channel_net.1`` / ``channel_net.3`` (1x1 convs).
    """

    def __init__(
        self,
        in_channels: int,
        kernel_size: int = 3,
        stride: int = 2,
        groups: int | None = None,
        use_channel: bool = True,
        norm_layer: Callable[[int], nn.Module] | None = None,
    ) -> None:
        super().__init__()
        groups = in_channels if groups is None else groups
        if in_channels <= 0 or in_channels % groups:
            raise ValueError(f"AWD: in_channels={in_channels} must be a positive multiple of groups={groups}")
        if kernel_size % 2 != 1 or kernel_size < 1:
            raise ValueError(f"AWD: kernel_size must be odd and positive, got {kernel_size}")
        if stride < 1:
            raise ValueError(f"AWD: stride must be >= 1, got {stride}")
        norm_layer = norm_layer or nn.BatchNorm2d
        self.in_channels = in_channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.groups = groups
        self.use_channel = use_channel
        self.pad = (kernel_size - 1) // 2
        kk = kernel_size * kernel_size
        self.weight_net = nn.Sequential(
            nn.Conv2d(
                in_channels,
                groups * kk,
                kernel_size,
                stride=stride,
                padding=self.pad,
                groups=groups,
                bias=False,
            ),
            norm_layer(groups * kk),
        )
        if use_channel:
            hidden = max(in_channels // 4, 1)
            self.channel_net = nn.Sequential(
                nn.AdaptiveAvgPool2d(1),
                nn.Conv2d(in_channels, hidden, 1, bias=False),
                nn.ReLU(inplace=True),
                nn.Conv2d(hidden, in_channels, 1, bias=False),
            )
        else:
            self.channel_net = None

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, g, C/g | 1, k*k, oh*ow)`` (weight_net, times the channel factor when enabled)."""
        b, c = x.shape[:2]
        g, kk = self.groups, self.kernel_size**2
        conv, norm = self.weight_net[0], self.weight_net[1]
        frozen = hasattr(norm, "running_mean") and (not norm.training or not isinstance(norm, nn.BatchNorm2d))
        if frozen and not isinstance(norm, nn.BatchNorm2d) or frozen and norm.track_running_stats:
            # fixed statistics: fold the BN affine map into the conv (one pass less over 9C x L values)
            scale = norm.weight * (norm.running_var + norm.eps).rsqrt()
            bias = norm.bias - norm.running_mean * scale
            weight = conv.weight * scale.view(-1, 1, 1, 1)
            if self.channel_net is not None and g == c and not torch.jit.is_tracing():
                # one group per channel: the per-(image, channel) factor folds into per-image weights
                # too; one grouped conv over the batch (groups B*C) instead of a pass over 9C x L values.
                # Not while tracing for export: ONNX has no convolution with an input-dependent kernel.
                a = self.channel_net(x).view(b, c, 1).expand(b, c, kk).reshape(b * c * kk)
                z = window_logits(
                    x.reshape(1, b * c, *x.shape[-2:]),
                    weight.repeat(b, 1, 1, 1) * a.view(-1, 1, 1, 1),
                    bias.repeat(b) * a,
                    conv.stride,
                    conv.padding,
                    1,
                    b * g,
                )
                return z.view(b, g, 1, kk, -1)
            z = window_logits(x, weight, bias, conv.stride, conv.padding, 1, g)
        else:
            z = self.weight_net(x)  # (B, g*kk, oh, ow), channel g*kk + k
        z = z.view(b, g, 1, kk, -1)
        if self.channel_net is not None:
            z = z * self.channel_net(x).view(b, g, c // g, 1, 1)  # per-(image, channel) inverse temperature
        return z

    def sampling_weights(self, x: torch.Tensor) -> torch.Tensor:
        """Softmax weights ``(B, g, C/g or 1, k*k, oh, ow)``; non-negative, sum 1 over the ``k*k`` axis."""
        oh = (x.shape[-2] - 1) // self.stride + 1
        ow = (x.shape[-1] - 1) // self.stride + 1
        z = self._logits(x)
        return torch.softmax(z, dim=3).view(*z.shape[:4], oh, ow)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"AWD expects (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        if x.shape[-2] <= self.pad or x.shape[-1] <= self.pad:
            raise ValueError(
                f"AWD: spatial size {tuple(x.shape[-2:])} too small for reflect padding {self.pad}"
            )
        b, c, h, w = x.shape
        g, k, kk, s = self.groups, self.kernel_size, self.kernel_size**2, self.stride
        oh, ow = (h - 1) // s + 1, (w - 1) // s + 1
        wts = self.sampling_weights(x)  # (B, g, C/g | 1, kk, oh, ow)
        if wts.shape[2] != c // g:  # logits shared by the channels of a group
            wts = wts.expand(b, g, c // g, kk, oh, ow)
        wts = wts.reshape(b, c, kk, oh, ow)
        xp = F.pad(x, (self.pad,) * 4, mode="reflect")
        # sum over the k*k taps of strided views of the padded input: the same numbers as unfolding the
        # windows, without materialising the (B, C*k*k, L) patch tensor (3x faster on CPU, 9x less memory)
        # unbind, not wts[:, :, t]: in training, each slice's backward would zero-fill a gradient of the
        # whole (B, C, k*k, oh, ow) tensor (k*k times); unbind's backward stacks the k*k parts once
        taps_w = wts.unbind(2)
        y = None
        for tap, tap_w in zip(_windows(xp, (k, k), (s, s), (oh, ow)), taps_w):
            y = tap * tap_w if y is None else y.addcmul_(tap, tap_w)
        return y

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"groups={self.groups}, use_channel={self.use_channel}"
        )
