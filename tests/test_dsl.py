"""DSL loss: value, gradient flow and bound (docs/models.md)."""

from __future__ import annotations

import pytest
import torch

from darkseg.models import DSLLoss, dsl_loss


def _feats(g, requires_grad=False):
    shapes = [(2, 4, 8, 8), (2, 8, 4, 4), (2, 16, 2, 2), (2, 32, 1, 1)]
    return [torch.randn(s, generator=g).requires_grad_(requires_grad) for s in shapes]


def test_zero_and_bounds():
    g = torch.Generator().manual_seed(0)
    f = _feats(g)
    assert float(dsl_loss(f, f)) == 0.0
    big = [x * 100 for x in _feats(g)]
    val = float(dsl_loss(big, f))
    assert 0 < val <= 0.004 + 1e-9


def test_constant_offset():
    g = torch.Generator().manual_seed(1)
    fc = _feats(g)
    for delta, expected in [(0.2, 0.04 * 0.04), (0.5, 0.004)]:
        fn = [x + delta for x in fc]
        assert abs(float(dsl_loss(fn, fc)) - expected) < 1e-7


def test_gradients_antisymmetric_and_clamped():
    g = torch.Generator().manual_seed(2)
    fc = _feats(g, True)
    fn = [(x.detach() + 0.3 * torch.randn(x.shape, generator=g)).requires_grad_(True) for x in fc]
    dsl_loss(fn, fc).backward()
    for a, b in zip(fn, fc):
        torch.testing.assert_close(a.grad, -b.grad)
        sq = (a - b).detach() ** 2
        assert (a.grad[sq > 0.1] == 0).all()
        assert (a.grad[(sq > 0) & (sq < 0.1)] != 0).all()


def test_detach_levels_weights_and_errors():
    g = torch.Generator().manual_seed(3)
    fc = _feats(g, True)
    fn = [(x.detach() + 0.1).requires_grad_(True) for x in fc]
    loss = dsl_loss(fn, fc, detach_clean=True, levels=[0, 2], weight=1.0, clamp=1.0)
    assert abs(loss.item() - 2 * 0.01) < 1e-6
    loss.backward()
    assert all(x.grad is None for x in fc)
    assert fn[1].grad is None and fn[0].grad is not None
    d = {"0": fn[0].detach(), "1": fn[1].detach()}
    assert float(DSLLoss(levels=(0, 1))(d, d)) == 0.0
    with pytest.raises(ValueError, match="shapes differ"):
        dsl_loss(fn[:2], fc[1:3])
    with pytest.raises(ValueError, match="levels"):
        dsl_loss(fn[:2], fc)
