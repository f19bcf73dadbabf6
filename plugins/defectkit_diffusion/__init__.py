"""Stable Diffusion generation for defectkit: model backends, schedulers, ControlNet modalities, the generate step."""
