"""Winograd F(2x2, 3x3) convolution written with PyTorch operations, against the direct convolution.

A lever measured and not taken (docs/benchmarks.md): Winograd's algorithm computes a 3x3 convolution
with 2.25x fewer multiplies, as 16 matrix products between transformed 4x4 input tiles and transformed
weights. Written with PyTorch operations, the tile gather and the two transforms are separate passes
over arrays 4x the size of the input; this script times them on the paper model's shapes (the mask
head's 100 RoIs at 14x14, the FPN / RPN convolutions at P2..P4) and checks the accuracy against float64.

    python benchmarks/winograd.py            # one thread, prints a Markdown table
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

#: F(2x2, 3x3) transforms (Lavin & Gray 2016): input B^T, weight G, output A^T
B_T = torch.tensor([[1.0, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]])
G = torch.tensor([[1.0, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
A_T = torch.tensor([[1.0, 1, 1, 0], [0, 1, -1, -1]])


def transformed_weight(w: torch.Tensor) -> torch.Tensor:
    """``(Co, C, 3, 3)`` -> ``(16, Co, C)``: ``G w G^T`` per filter, computed in float64."""
    u = torch.einsum("ar,ocrs,bs->aboc", G.double(), w.double(), G.double())
    return u.reshape(16, w.shape[0], w.shape[1]).to(w.dtype).contiguous()


def winograd_conv(x: torch.Tensor, u: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """3x3 convolution, stride 1, padding 1: ``(N, C, H, W)`` -> ``(N, Co, H, W)``."""
    n, c, h, w = x.shape
    th, tw = (h + 1) // 2, (w + 1) // 2
    xp = F.pad(x, (1, 2 * tw + 1 - w, 1, 2 * th + 1 - h))
    s_n, s_c, s_h, s_w = xp.stride()
    tiles = xp.as_strided((4, 4, c, n, th, tw), (s_h, s_w, s_c, s_n, 2 * s_h, 2 * s_w)).reshape(16, -1)
    v = (torch.kron(B_T, B_T) @ tiles).view(16, c, -1)  # (16, C, N*T)
    m = torch.bmm(u, v)  # (16, Co, N*T)
    co = u.shape[1]
    y = (torch.kron(A_T, A_T) @ m.view(16, -1)).view(2, 2, co, n, th, tw)
    y = y.permute(3, 2, 4, 0, 5, 1).reshape(n, co, 2 * th, 2 * tw)[:, :, :h, :w]
    return y + bias.view(1, -1, 1, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    g = torch.Generator().manual_seed(0)

    def median_ms(fn) -> float:
        fn()
        times = []
        for _ in range(args.repeats):
            t0 = time.process_time()
            fn()
            times.append(time.process_time() - t0)
        return statistics.median(times) * 1e3

    print(
        "| input (N x C x H x W), 256 -> 256 | direct (ms) | Winograd (ms) | direct / Winograd "
        "| error vs float64: direct | Winograd |\n|---|---:|---:|---:|---:|---:|"
    )
    with torch.no_grad():
        for shape in ((100, 256, 14, 14), (1, 256, 104, 152), (1, 256, 52, 76), (1, 256, 26, 38)):
            x = torch.randn(*shape, generator=g)
            w = torch.randn(256, shape[1], 3, 3, generator=g) / 48
            b = torch.randn(256, generator=g)
            u = transformed_weight(w)
            ref = F.conv2d(x.double(), w.double(), b.double(), 1, 1)
            scale = float(ref.abs().max())
            err_d = float((F.conv2d(x, w, b, 1, 1) - ref).abs().max()) / scale
            err_w = float((winograd_conv(x, u, b) - ref).abs().max()) / scale
            t_d = median_ms(lambda x=x, w=w, b=b: F.conv2d(x, w, b, 1, 1))
            t_w = median_ms(lambda x=x, u=u, b=b: winograd_conv(x, u, b))
            print(
                f"| {' x '.join(map(str, shape))} | {t_d:.1f} | {t_w:.1f} | {t_d / t_w:.2f}x "
                f"| {err_d:.1e} | {err_w:.1e} |"
            )


if __name__ == "__main__":
    main()
