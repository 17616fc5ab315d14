"""darkseg.demo: the main job on embedded procedural data (``darkseg demo``), above the engine.

* :mod:`darkseg.demo.stages` - the stages as plain functions (scenes, dark test set, training,
  evaluation of several renderings), reused by ``benchmarks/ablation.py``;
* :mod:`darkseg.demo.report` - loss curve, overlays, ``report.md`` / ``report.html``;
* :mod:`darkseg.demo.job` - :class:`DemoSettings` and :func:`run_demo`, composed of the stages.
"""

from darkseg.demo.job import QUICK_OVERRIDES, DemoSettings, run_demo

__all__ = ["DemoSettings", "QUICK_OVERRIDES", "run_demo"]
