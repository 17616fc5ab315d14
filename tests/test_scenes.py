"""Procedural scenes: determinism, exact masks, occlusion, COCO round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from darkseg.data.scenes import (
    SCENE_CLASSES,
    SceneConfig,
    generate_scenes,
    render_scene,
    resolve_occlusion,
    shape_mask,
)
from darkseg.utils.io import read_image

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def test_same_seed_same_files_and_prefix_property(tmp_path):
    d1, a1 = generate_scenes(tmp_path / "a", 4, (96, 64), seed=3, progress=False)
    d2, a2 = generate_scenes(tmp_path / "b", 6, (96, 64), seed=3, progress=False)
    d3, _ = generate_scenes(tmp_path / "c", 2, (96, 64), seed=4, progress=False)
    for i in range(4):
        assert (d1 / f"{i:06d}.png").read_bytes() == (d2 / f"{i:06d}.png").read_bytes()
    assert (d1 / "000000.png").read_bytes() != (d3 / "000000.png").read_bytes()
    j1, j2 = json.loads(a1.read_text()), json.loads(a2.read_text())
    n1 = len(j1["annotations"])
    assert j1["annotations"] == j2["annotations"][:n1]


def test_masks_are_exactly_the_object_pixels():
    cfg = SceneConfig(shadows=False, min_objects=5, max_objects=8)
    for seed in range(3):
        scene = render_scene(np.random.default_rng(seed), (120, 90), cfg=cfg)
        assert scene.instances, "every scene should keep at least one object"
        union = np.zeros(scene.instance_map.shape, bool)
        for k, inst in enumerate(scene.instances, start=1):
            assert inst.mask.dtype == bool and inst.mask.sum() >= cfg.min_visible_area
            assert np.array_equal(inst.mask, scene.instance_map == k)
            assert not (union & inst.mask).any(), "instance masks must not overlap"
            union |= inst.mask
        # Outside every mask the picture is the untouched background, bit for bit ...
        assert np.array_equal(scene.image[~union], scene.background[~union])
        # ... and inside the masks objects were painted (colours differ from the background).
        changed = (scene.image != scene.background).any(axis=2)
        assert changed[union].mean() > 0.95


def test_ring_hole_is_not_part_of_the_mask():
    m = shape_mask("ring", (64, 64), 32, 32, 20, 0.0)
    assert not m[32, 32] and m[32, 32 + 15]
    for name in SCENE_CLASSES:
        assert shape_mask(name, (64, 64), 32, 32, 16, 0.3).sum() > 100
    with pytest.raises(ValueError, match="blob"):
        shape_mask("blob", (64, 64), 32, 32, 16, 0.0)


def test_occlusion_drops_hidden_objects_and_keeps_visible_parts():
    h = w = 40
    big = np.zeros((h, w), bool)
    big[5:35, 5:35] = True
    hidden = np.zeros((h, w), bool)
    hidden[10:20, 10:20] = True  # entirely under `big` below
    back = np.zeros((h, w), bool)
    back[0:20, 0:40] = True  # partly covered by `big`
    inst_map, kept = resolve_occlusion([back, hidden, big], min_visible_area=10)
    assert kept == [0, 2]
    assert np.array_equal(inst_map == 2, big)
    assert np.array_equal(inst_map == 1, back & ~big)
    # Dropping the hidden object must not leave its pixels labelled anywhere.
    assert set(np.unique(inst_map)) == {0, 1, 2}


def test_coco_json_loads_and_round_trips_masks(tmp_path):
    d, ann = generate_scenes(tmp_path, 3, (80, 60), seed=7, classes=["star", "disc"], progress=False)
    coco = COCO(str(ann))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["star", "disc"]
    assert len(coco.getImgIds()) == 3 and len(coco.getAnnIds()) > 0
    # Re-render image 0 and compare its masks with the decoded annotations.
    scene = render_scene(np.random.default_rng([7, 0]), (80, 60), ("star", "disc"))
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[1]))
    assert len(anns) == len(scene.instances)
    for a, inst in zip(anns, scene.instances):
        m = coco.annToMask(a).astype(bool)
        assert np.array_equal(m, inst.mask)
        assert a["area"] == int(m.sum()) == int(mask_utils.area(a["segmentation"]))
        ys, xs = np.nonzero(m)
        assert a["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
        assert coco.loadCats(a["category_id"])[0]["name"] == inst.category
    img = read_image(d / coco.loadImgs(1)[0]["file_name"])
    assert np.array_equal(img, scene.image)


@pytest.mark.parametrize(("size", "fmt"), [((33, 47), "png"), ((200, 24), "jpg")])
def test_any_size_and_format(tmp_path, size, fmt):
    d, ann = generate_scenes(tmp_path, 2, size, seed=0, image_format=fmt, progress=False)
    meta = json.loads(ann.read_text())
    for im in meta["images"]:
        assert im["file_name"].endswith(fmt)
        assert read_image(d / im["file_name"]).shape == (size[1], size[0], 3)
        assert (im["width"], im["height"]) == size


def test_bad_arguments_are_named(tmp_path):
    with pytest.raises(ValueError, match="classes"):
        generate_scenes(tmp_path, 1, classes=["disc", "teapot"], progress=False)
    with pytest.raises(ValueError, match="num_images"):
        generate_scenes(tmp_path, 0, progress=False)
    with pytest.raises(ValueError, match="16x16"):
        render_scene(np.random.default_rng(0), (8, 8))


def test_extra_classes_and_clutter_keep_masks_exact(tmp_path):
    from darkseg.data.scenes import ALL_SCENE_CLASSES, EXTRA_SCENE_CLASSES

    assert set(EXTRA_SCENE_CLASSES) <= set(ALL_SCENE_CLASSES)
    cfg = SceneConfig(min_objects=6, max_objects=9, clutter=10)
    seen = set()
    for i in range(6):
        scene = render_scene(np.random.default_rng([5, i]), (128, 96), ALL_SCENE_CLASSES, cfg)
        for k, inst in enumerate(scene.instances, 1):
            assert np.array_equal(inst.mask, scene.instance_map == k)
            seen.add(inst.category)
    assert seen & set(EXTRA_SCENE_CLASSES)
    _, ann = generate_scenes(tmp_path, 2, (96, 64), 1, ("tile", "coin", "disc"), cfg=cfg, progress=False)
    cats = {c["name"] for c in json.loads(ann.read_text())["categories"]}
    assert cats == {"tile", "coin", "disc"}
    with pytest.raises(ValueError, match="distinct names"):
        generate_scenes(tmp_path / "x", 1, (96, 64), 1, ("blob",), progress=False)


def test_clutter_zero_draws_nothing_extra():
    a = render_scene(np.random.default_rng(3), (96, 64))
    b = render_scene(np.random.default_rng(3), (96, 64), cfg=SceneConfig(clutter=0))
    c = render_scene(np.random.default_rng(3), (96, 64), cfg=SceneConfig(clutter=5))
    assert np.array_equal(a.image, b.image)
    assert not np.array_equal(a.image, c.image)
