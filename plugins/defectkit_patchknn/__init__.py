"""PatchCore-style anomaly detection for defectkit: a frozen CNN's patch features, a memory bank, k-NN distances.

Components (registered in :mod:`defectkit_patchknn.hooks`): the trainer ``patch_knn``
builds the memory bank from good training images, the detector ``patch_knn``
scores test images against it. See ``docs/patchknn.md``.
"""
