"""DSL: disturbance suppression loss (the paper's feature-consistency term between clean and noisy views).

    L_DSL = sum_l weight * mean( clamp( (F_noisy_l - F_clean_l)^2, 0, clamp ) )

over the backbone outputs C2..C5 (before FPN), element-wise squared error clamped per element, averaged
over batch, channels and (padded) positions of each level, summed over levels (no division by the
number of levels). No stop-gradient by default: the gradient flows into both branches.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

__all__ = ["dsl_loss", "DSLLoss"]

Features = Sequence[torch.Tensor] | Mapping[str, torch.Tensor]


def _as_list(feats: Features) -> list[torch.Tensor]:
    if isinstance(feats, Mapping):
        return list(feats.values())
    return list(feats)


def dsl_loss(
    noisy_feats: Features,
    clean_feats: Features,
    weight: float = 0.01,
    clamp: float = 0.1,
    detach_clean: bool = False,
    levels: Sequence[int] | None = None,
) -> torch.Tensor:
    """Disturbance suppression loss between noisy and clean feature pyramids.

    Args:
        noisy_feats, clean_feats: the same number of levels (list or ordered dict), level ``l`` a
            ``(B, C_l, H_l, W_l)`` float tensor, equal shapes between the two.
        weight: per-level weight (0.01 in the paper).
        clamp: upper clamp of the element-wise squared error (0.1); elements above get zero gradient.
        detach_clean: stop the gradient into the clean features (False in the paper).
        levels: indices of the levels to use (default all).

    Returns:
        scalar tensor, in ``[0, weight * clamp * len(levels)]``.
    """
    fn, fc = _as_list(noisy_feats), _as_list(clean_feats)
    if len(fn) != len(fc):
        raise ValueError(f"dsl_loss: {len(fn)} noisy levels vs {len(fc)} clean levels")
    if not fn:
        raise ValueError("dsl_loss: no feature levels given")
    idx = range(len(fn)) if levels is None else levels
    total = None
    for i in idx:
        if not 0 <= i < len(fn):
            raise ValueError(f"dsl_loss: level {i} out of range for {len(fn)} levels")
        a, b = fn[i], fc[i]
        if a.shape != b.shape:
            raise ValueError(
                f"dsl_loss: level {i} shapes differ: noisy {tuple(a.shape)} vs clean {tuple(b.shape)}"
            )
        if detach_clean:
            b = b.detach()
        term = weight * torch.clamp((a - b).pow(2), min=0.0, max=clamp).mean()
        total = term if total is None else total + term
    return total


class DSLLoss(nn.Module):
    """Module form of :func:`dsl_loss` holding the settings (see :class:`~darkseg.models.DSLConfig`)."""

    def __init__(
        self, weight: float = 0.01, clamp: float = 0.1, detach_clean: bool = False, levels=(0, 1, 2, 3)
    ) -> None:
        super().__init__()
        self.weight, self.clamp, self.detach_clean, self.levels = weight, clamp, detach_clean, tuple(levels)

    def forward(self, noisy_feats: Features, clean_feats: Features) -> torch.Tensor:
        return dsl_loss(noisy_feats, clean_feats, self.weight, self.clamp, self.detach_clean, self.levels)

    def extra_repr(self) -> str:
        return (
            f"weight={self.weight}, clamp={self.clamp}, detach_clean={self.detach_clean}, "
            f"levels={self.levels}"
        )
