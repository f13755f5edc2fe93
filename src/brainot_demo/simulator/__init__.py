"""Parts of the NSD simulator (:mod:`brainot_demo.simulate` is the entry point and documents the model).

``design``: the trial design and stimulus table; ``scenes``: drawn images and their captions;
``brain``: subject volumes, ROI labels, voxel responses and betas; ``writer``: atomic file writers.
"""
