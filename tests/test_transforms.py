"""Transforms: keep-ratio nearest resize geometry, flips, LowLightViews target rescaling, collate."""

from __future__ import annotations

import pytest
import torch

from darkseg.data.loader import build_loader, collate_fn
from darkseg.data.transforms import (
    Compose,
    LowLightViews,
    RandomHorizontalFlip,
    ResizeKeepRatio,
    keep_ratio_size,
    low_light_batch,
    resize_target,
)


def _sample(h: int, w: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(3, h, w, generator=g)
    masks = torch.zeros(2, h, w, dtype=torch.uint8)
    masks[0, 2:6, 1:5] = 1  # box x 1..5, y 2..6
    masks[1, h // 2 :, w // 2 :] = 1
    boxes = torch.tensor([[1.0, 2.0, 5.0, 6.0], [w // 2, h // 2, w, h]], dtype=torch.float32)
    target = {
        "boxes": boxes,
        "labels": torch.tensor([1, 2]),
        "masks": masks,
        "image_id": 7,
        "area": masks.flatten(1).sum(1).float(),
        "iscrowd": torch.zeros(2, dtype=torch.int64),
    }
    return image, target


@pytest.mark.parametrize(
    ("wh", "expected"),
    [
        ((1200, 800), (600, 400)),
        ((640, 480), (533, 400)),
        ((800, 1200), (400, 600)),
        ((300, 200), (600, 400)),
    ],
)
def test_keep_ratio_size_box_semantics(wh, expected):
    assert keep_ratio_size(*wh, max_size=600, min_size=400) == expected


def test_nearest_half_resize_picks_even_rows_and_columns():
    image, target = _sample(800, 1200)
    out, t = ResizeKeepRatio(600, 400)(image, target)
    assert out.shape == (3, 400, 600)
    assert torch.equal(out, image[:, ::2, ::2])  # nearest 0.5x, as INTER_NEAREST: out[i, j] = in[2i, 2j]
    assert torch.equal(t["masks"], target["masks"][:, ::2, ::2])
    assert torch.allclose(t["boxes"], target["boxes"] / 2)
    assert torch.allclose(t["area"], target["area"] / 4)
    assert t["masks"].dtype == torch.uint8 and t["labels"] is target["labels"]


def test_resize_non_integer_scale_matches_opencv_nearest():
    cv2 = pytest.importorskip("cv2")
    image, _ = _sample(480, 640)
    out, _ = ResizeKeepRatio(600, 400)(image, None)
    assert out.shape == (3, 400, 533)
    ref = cv2.resize(image.permute(1, 2, 0).numpy(), (533, 400), interpolation=cv2.INTER_NEAREST)
    assert torch.equal(out, torch.from_numpy(ref).permute(2, 0, 1))


def test_bilinear_differs_from_nearest_and_bad_interpolation_rejected():
    image, _ = _sample(80, 120)
    a, _ = ResizeKeepRatio(60, 40, "nearest")(image)
    b, _ = ResizeKeepRatio(60, 40, "bilinear")(image)
    assert a.shape == b.shape and not torch.equal(a, b)
    assert b.std() < a.std()  # averaging smooths (why the paper uses nearest)
    with pytest.raises(ValueError, match="interpolation"):
        ResizeKeepRatio(interpolation="lanczos")


def test_flip_boxes_and_masks_consistent():
    image, target = _sample(20, 30)
    out, t = RandomHorizontalFlip(p=1.0)(image, target)
    assert torch.equal(out, image.flip(-1))
    assert torch.equal(t["masks"], target["masks"].flip(-1))
    # box of each flipped mask equals the flipped box
    for k in range(2):
        ys, xs = torch.nonzero(t["masks"][k], as_tuple=True)
        mask_box = torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32)
        assert torch.equal(t["boxes"][k], mask_box)
    same, t0 = RandomHorizontalFlip(p=0.0)(image, target)
    assert same is image and t0 is target


def test_flip_is_generator_driven_and_reseedable():
    image, target = _sample(8, 8)
    f1, f2 = RandomHorizontalFlip(0.5, seed=3), RandomHorizontalFlip(0.5, seed=3)
    seq1 = [torch.equal(f1(image, target)[0], image) for _ in range(32)]
    seq2 = [torch.equal(f2(image, target)[0], image) for _ in range(32)]
    assert seq1 == seq2 and 0 < sum(seq1) < 32
    f1.reseed(3)
    assert [torch.equal(f1(image, target)[0], image) for _ in range(32)] == seq1


class _HalfSynth:
    """A deterministic stand-in with the synthesiser's call signature, used only to test target rescaling."""

    output_scale = 0.5

    def __call__(self, x, generator=None):
        noise = torch.rand(x.shape[:-3] + (4, x.shape[-2] // 2, x.shape[-1] // 2), generator=generator)
        clean = torch.cat([x[..., ::2, ::2], x[..., 1:2, ::2, ::2]], dim=-3)
        return clean, clean + 0.01 * noise


def test_low_light_views_rescales_target_to_packed_half_resolution():
    image, target = _sample(40, 61)  # odd width: cropped to 60 first
    clean, noisy, t = LowLightViews(_HalfSynth(), seed=1)(image, target)
    assert clean.shape == (4, 20, 30) and noisy.shape == (4, 20, 30)
    assert t["masks"].shape == (2, 20, 30)
    assert torch.allclose(t["boxes"][0], torch.tensor([0.5, 1.0, 2.5, 3.0]))
    assert t["boxes"][1, 2] == 30  # clamped to the cropped width, then halved


def test_low_light_batch_groups_sizes_and_keeps_order():
    s = _HalfSynth()
    imgs = [_sample(8, 12)[0], _sample(10, 10)[0], _sample(8, 12, seed=1)[0]]
    targets = [_sample(8, 12)[1], _sample(10, 10)[1], _sample(8, 12)[1]]
    cleans, noisys, ts = low_light_batch(s, imgs, targets, torch.Generator().manual_seed(0))
    assert [c.shape[-2:] for c in cleans] == [(4, 6), (5, 5), (4, 6)]
    assert torch.equal(cleans[2][:3], imgs[2][:, ::2, ::2])
    assert ts[1]["masks"].shape == (2, 5, 5)


def test_low_light_views_with_real_synthesizer():
    synth_mod = pytest.importorskip("darkseg.synth")
    synth = synth_mod.LowLightSynthesizer(synth_mod.SynthConfig(output="packed"))
    image, target = _sample(32, 48)
    clean, noisy, t = Compose([LowLightViews(synth, seed=0)])(image, target)
    assert clean.shape == noisy.shape == (4, 16, 24)
    assert t["masks"].shape == (2, 16, 24)
    c2, n2, _ = LowLightViews(synth, seed=0)(image, target)
    assert torch.equal(n2, noisy) and not torch.equal(clean, noisy)


def test_resize_target_empty_and_collate():
    empty = {
        "boxes": torch.zeros(0, 4),
        "masks": torch.zeros(0, 10, 10, dtype=torch.uint8),
        "area": torch.zeros(0),
    }
    out = resize_target(empty, (10, 10), (5, 5))
    assert out["masks"].shape == (0, 5, 5)
    imgs, tgts = collate_fn([(torch.zeros(3, 4, 4), {"a": 1}), (torch.zeros(3, 5, 6), {"a": 2})])
    assert [i.shape[-1] for i in imgs] == [4, 6] and [t["a"] for t in tgts] == [1, 2]


class _FlipDataset(torch.utils.data.Dataset):
    def __init__(self):
        self.transforms = Compose([RandomHorizontalFlip(0.5)])
        self.image = torch.arange(4.0).reshape(1, 1, 4)

    def __len__(self):
        return 16

    def __getitem__(self, i):
        return self.transforms(self.image, None)


def test_loader_seeded_and_reproducible():
    runs = []
    for _ in range(2):
        loader = build_loader(_FlipDataset(), batch_size=4, shuffle=True, seed=5)
        runs.append([int(img[0, 0, 0]) for imgs, _ in loader for img in imgs])
    assert runs[0] == runs[1] and set(runs[0]) == {0, 3}


def test_seed_worker_gives_each_worker_its_own_reproducible_stream():
    ds = _FlipDataset()
    ds.image = torch.arange(4.0).reshape(1, 1, 4)
    runs = []
    for _ in range(2):
        loader = build_loader(ds, batch_size=1, shuffle=False, num_workers=2, seed=11)
        runs.append([int(imgs[0][0, 0, 0]) for imgs, _ in loader])
    assert runs[0] == runs[1]
    w0, w1 = runs[0][0::2], runs[0][1::2]  # batches alternate between the two workers
    assert w0 != w1  # forked workers do not repeat the parent's (or each other's) flips


def test_crop_to_even_drops_boxes_cut_off():
    image, target = _sample(40, 61)
    target["boxes"] = torch.cat([target["boxes"], torch.tensor([[60.0, 0.0, 61.0, 5.0]])])
    target["labels"] = torch.tensor([1, 2, 3])
    target["area"] = torch.tensor([16.0, 1.0, 5.0])
    target["masks"] = torch.cat([target["masks"], torch.zeros(1, 40, 61, dtype=torch.uint8)])
    target["iscrowd"] = torch.zeros(3, dtype=torch.int64)
    clean, _, t = LowLightViews(_HalfSynth())(image, target)
    assert t["labels"].tolist() == [1, 2] and t["masks"].shape == (2, 20, 30) and len(t["area"]) == 2
    assert t["image_id"] == 7
