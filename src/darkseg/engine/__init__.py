"""darkseg.engine: training, evaluation, prediction and export (import the submodule you need).

* ``darkseg.engine.evaluate`` - ``coco_evaluate`` (pycocotools, 12 metrics), results writing,
  ``evaluate_model`` with a per-class AP table;
* ``darkseg.engine.train`` - the training loop;
* ``darkseg.engine.predictor`` / ``darkseg.engine.export`` - inference and model export.

Nothing is imported here, so ``import darkseg.engine.evaluate`` does not pull in the training code.
"""
