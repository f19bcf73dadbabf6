"""Text-to-image diffusion trained from scratch: a small pixel-space UNet and CLIP text encoder (seed 004)."""
