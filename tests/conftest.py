"""Shared fixtures.

``shared_data`` points at the third-party test files in ``../shared/data`` (or ``$DARKSEG_SHARED_DATA``).
Tests that need them are skipped with a clear reason when the folder is absent; the product never
needs them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: tiny Mask R-CNN heads for the ablation smoke tests (seconds per run)
TINY_HEADS = [
    "model.fpn_channels=16",
    "model.box_head_dim=32",
    "model.mask_head_channels=16",
    "model.rpn_pre_nms_top_n_train=50",
    "model.rpn_post_nms_top_n_train=20",
    "model.rpn_pre_nms_top_n_test=20",
    "model.rpn_post_nms_top_n_test=10",
    "model.rpn_batch_size_per_image=32",
    "model.box_batch_size_per_image=16",
    "model.box_detections_per_img=5",
]


def _shared_data_dir() -> Path | None:
    env = os.environ.get("DARKSEG_SHARED_DATA")
    candidates = [Path(env)] if env else []
    candidates += [REPO.parent / "shared" / "data", REPO / "shared" / "data"]
    for c in candidates:
        if c.is_dir():
            return c
    return None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    d = _shared_data_dir()
    if d is None:
        pytest.skip("third-party test data folder ../shared/data is absent (set DARKSEG_SHARED_DATA)")
    return d


def shared_subdir(name: str) -> Path:
    """Path of ``shared/data/<name>``; skips the calling test when it is missing."""
    d = _shared_data_dir()
    if d is None or not (d / name).exists():
        pytest.skip(f"shared test data '{name}' is absent (../shared/data/{name})")
    return d / name


def tiny_checkpoint(path: Path, detections: int = 8, in_channels: int = 3) -> Path:
    """Save a tiny seeded Mask R-CNN (classes person, car; AWD + SCB; every box kept, score floor 0) to
    ``path``: a fast stand-in for a trained checkpoint in prediction and serving tests."""
    import torch

    from darkseg.models import ModelConfig, build_model, save_checkpoint

    torch.manual_seed(0)
    cfg = ModelConfig.tiny(
        ["person", "car"], awd=True, scb=True, in_channels=in_channels, min_size=96, max_size=128,
        box_score_thresh=0.0, box_detections_per_img=detections,
    )  # fmt: skip
    save_checkpoint(path, build_model(cfg).eval())
    return path


@pytest.fixture
def one_torch_thread():
    """One intra-op thread for the test: the test machine's cores are shared, and oversubscribed torch
    threads spin."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
