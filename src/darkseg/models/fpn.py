"""The feature pyramid network, with the top-down 2x nearest upsample fused into the addition.

torchvision's ``FeaturePyramidNetwork`` upsamples each coarser level with ``F.interpolate(mode="nearest")``
to the finer level's size and adds the lateral. When the finer level is exactly twice the coarser one
(always, for inputs padded to a multiple of 32), nearest upsampling repeats every value into a 2x2 block,
so the sum is a broadcast addition over a ``(B, C, h, 2, w, 2)`` view of the lateral: the same float
additions, bit for bit, without writing the upsampled tensor (measured on the CPU, 256 channels, the
three levels from 104 x 152 to 26 x 38: 27 ms against 7 ms; ``docs/benchmarks.md``). Used without a
gradient only: in training the broadcast's backward (a reduction) is slower than the upsample's.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork

__all__ = ["FPN", "upsample_add"]


def upsample_add(lateral: torch.Tensor, top: torch.Tensor) -> torch.Tensor:
    """``lateral + F.interpolate(top, size=lateral.shape[-2:], mode="nearest")``.

    Shapes: ``lateral (B, C, H, W)``, ``top (B, C, h, w)`` -> ``(B, C, H, W)``.
    """
    b, c, h, w = top.shape
    fused = (
        lateral.shape[-2:] == (2 * h, 2 * w)
        and not (torch.is_grad_enabled() and (lateral.requires_grad or top.requires_grad))
        and not torch.jit.is_tracing()
        and not torch.jit.is_scripting()
    )
    if not fused:
        return lateral + F.interpolate(top, size=lateral.shape[-2:], mode="nearest")
    out = torch.add(lateral.reshape(b, c, h, 2, w, 2), top.view(b, c, h, 1, w, 1))
    return out.view(b, c, 2 * h, 2 * w)


class FPN(FeaturePyramidNetwork):
    """torchvision's ``FeaturePyramidNetwork`` (same modules, parameters and state-dict keys) with the
    top-down pathway through :func:`upsample_add`.

    ``forward({name: (B, C_i, H_i, W_i)})`` -> ``{name: (B, out_channels, H_i, W_i)}`` plus the extra
    block's levels, in torchvision's order.
    """

    def forward(self, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        names = list(x.keys())
        feats = list(x.values())
        last_inner = self.get_result_from_inner_blocks(feats[-1], -1)
        results = [self.get_result_from_layer_blocks(last_inner, -1)]
        for idx in range(len(feats) - 2, -1, -1):
            last_inner = upsample_add(self.get_result_from_inner_blocks(feats[idx], idx), last_inner)
            results.insert(0, self.get_result_from_layer_blocks(last_inner, idx))
        if self.extra_blocks is not None:
            results, names = self.extra_blocks(results, feats, names)
        return OrderedDict(zip(names, results))
