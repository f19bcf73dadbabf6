"""DeCo-Diff: deviation-correcting diffusion anomaly detection (trainer and detector components).

The heavy modules (:mod:`.unet`, :mod:`.diffusion`, :mod:`.postprocess`, :mod:`.trainer`,
:mod:`.detector`) are imported only when a recipe step runs them.
"""
