"""Fine-tuning trainers for Stable Diffusion backends: LoRA, DoRA, AdaLoRA (dynamic rank),
textual inversion per defect class, and textual inversion with LoRA.

Each trainer writes the ``adapter`` artifact (``adapter.json`` plus diffusers-loadable
safetensors files) that the ``stable_diffusion`` generator reads.
"""
