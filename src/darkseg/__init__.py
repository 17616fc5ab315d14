"""darkseg: instance segmentation in the dark.

A PyTorch + torchvision implementation of "Instance Segmentation in the Dark" (Chen, Fu, Wei, Zheng,
Heide; IJCV 2023). The data flow is reflected in the sub-packages:

``raw`` (camera RAW and Bayer mosaics) -> ``synth`` (sRGB -> low-light RAW synthesis) -> ``data``
(datasets and transforms) -> ``models`` (AWD, SCB, DSL, Mask R-CNN) -> ``engine`` (training,
evaluation, prediction) -> ``cli``.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "Predictor"]


def __getattr__(name: str):  # lazy: importing darkseg must stay cheap
    if name == "Predictor":
        from darkseg.engine.predictor import Predictor

        return Predictor
    raise AttributeError(f"module 'darkseg' has no attribute {name!r}")
