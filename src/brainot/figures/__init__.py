"""The paper's figures 1, 3, 5 and 7, from the workflow's outputs (``python -m brainot.figures <name> ...``).

* ``correlation`` (Fig. 1): Pearson correlation between predicted and image embeddings of the first test
  images, the MSE model beside the OT model, and a summary table (:mod:`brainot.figures.correlation`).
* ``roi-maps`` (Fig. 3): each ROI family's areas over the subject's volume (:mod:`brainot.figures.roi_maps`).
* ``lambda`` (Fig. 5): caption metrics against the mass ratio lambda, one line per region set
  (:mod:`brainot.figures.lambda_curves`).
* ``case-study`` (Fig. 7): test images with their ground-truth caption and the captions of per-region models
  (:mod:`brainot.figures.case_study`).

See ``docs/figures.md``.
"""
