"""DefectFill (Song et al., CVPR 2025): an inpainting diffusion model fine-tuned to fill realistic defects."""
