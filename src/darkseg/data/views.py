"""Seeded views of a dataset: resumable keyed sampling for training, seeded synthetic views for evaluation.

* :class:`KeyedDataset` - ``dataset[(epoch, index)]``: the random transforms are re-seeded from
  ``(seed, epoch, index)`` before the sample is built, so a sample does not depend on worker scheduling
  and a resumed run sees exactly the samples of an uninterrupted one;
* :class:`SeededView` - an evaluation transform that renders the noisy or the clean low-light view of
  an image with a generator seeded from ``(seed, image_id)``: the same evaluation set in every run.

Both take any synthesiser object (a ``darkseg.synth.LowLightSynthesizer``); nothing here imports the
synthesis code.
"""

from __future__ import annotations

from typing import Any

import torch

from darkseg.data.build import DatasetError
from darkseg.data.transforms import LowLightViews, reseed_transforms
from darkseg.utils.runtime import mix_seed

__all__ = ["SKIPPED_KEY", "KeyedDataset", "SeededView"]

#: Key of the sample target that lists the unreadable images skipped to build the sample.
SKIPPED_KEY = "skipped_unreadable"


class KeyedDataset(torch.utils.data.Dataset):
    """Wraps a dataset with random transforms so that sample ``(epoch, index)`` is reproducible.

    ``dataset[(epoch, index)]`` re-seeds the base dataset's transforms with
    ``mix_seed(seed, epoch, index)`` and returns ``base[indices[index]]``.

    With ``skip_unreadable``, an image file that is missing or cannot be decoded does not end the run:
    the next index (wrapping around) is used instead, deterministically, and the sample's target lists
    the skipped files' messages under :data:`SKIPPED_KEY` (the trainer counts and reports them; this
    works the same inside DataLoader worker processes). When no image at all can be read,
    :class:`~darkseg.data.build.DatasetError`.
    """

    def __init__(
        self, base: Any, seed: int, indices: list[int] | None = None, skip_unreadable: bool = False
    ) -> None:
        self.base = base
        self.seed = int(seed)
        self.indices = list(range(len(base))) if indices is None else list(indices)
        self.skip_unreadable = skip_unreadable

    def __len__(self) -> int:
        return len(self.indices)

    def _load(self, epoch: int, index: int, position: int):
        transforms = getattr(self.base, "transforms", None)
        if transforms is not None:
            reseed_transforms(transforms, mix_seed(self.seed, epoch, index) % 2**62)
        return self.base[self.indices[position]]

    def __getitem__(self, key: tuple[int, int]):
        from darkseg.utils.io import ImageReadError

        epoch, index = key
        if not self.skip_unreadable:
            return self._load(epoch, index, index)
        skipped: list[str] = []
        for attempt in range(len(self.indices)):
            try:
                sample = self._load(epoch, index, (index + attempt) % len(self.indices))
            except (ImageReadError, FileNotFoundError) as exc:
                skipped.append(str(exc))
                continue
            if skipped:
                sample[-1][SKIPPED_KEY] = skipped
            return sample
        raise DatasetError(f"no readable training image: all {len(self.indices)} failed; first: {skipped[0]}")


class SeededView:
    """Evaluation transform: ``(image, target) -> (view, target)`` with synthesis seeded per image id.

    ``view`` is ``"noisy"`` or ``"clean"`` (the synthesiser's renderings of the sRGB image); the
    generator is re-seeded from ``(seed, image_id)``, so the evaluation set is the same in every run.
    """

    def __init__(self, synthesizer: Any, view: str, seed: int = 0) -> None:
        if view not in ("noisy", "clean"):
            raise ValueError(f"view must be 'noisy' or 'clean', got {view!r}")
        self.views = LowLightViews(synthesizer)
        self.view, self.seed = view, seed

    def __call__(self, image: torch.Tensor, target: dict):
        self.views.reseed(mix_seed(self.seed, int(target["image_id"]), 0xE7A1) % 2**62)
        clean, noisy, target = self.views(image, target)
        return (noisy if self.view == "noisy" else clean), target
