"""Low-light RAW synthesis: sRGB -> unprocessed camera RAW -> physics-based noise -> network input.

Public API::

    from darkseg.synth import SynthConfig, LowLightSynthesizer, load_camera, available_cameras

``darkseg.synth.render`` is the rendering module (its function is
``darkseg.synth.render.render_packed``). See ``docs/synthesis.md`` for the maths,
the channel-order decisions and the camera profiles.
"""

from darkseg.synth.noise import (
    CameraProfile,
    NoiseModel,
    NoiseParams,
    PGNoise,
    PGRUNoise,
    available_cameras,
    build_noise_model,
    load_camera,
    tukey_lambda_ppf,
    tukey_lambda_variance,
)
from darkseg.synth.pipeline import LowLightSynthesizer, SynthConfig, SynthParams
from darkseg.synth.render import RenderOptions
from darkseg.synth.unprocess import UnprocessParams, process_linear, unprocess

__all__ = [
    "SynthConfig",
    "LowLightSynthesizer",
    "SynthParams",
    "load_camera",
    "available_cameras",
    "CameraProfile",
    "NoiseModel",
    "NoiseParams",
    "PGNoise",
    "PGRUNoise",
    "build_noise_model",
    "tukey_lambda_ppf",
    "tukey_lambda_variance",
    "RenderOptions",
    "UnprocessParams",
    "unprocess",
    "process_linear",
]
