"""DINOv3 multi-task defect classifier: a ViT backbone, a segmentation decoder on its patch tokens, and
mask-guided attention pooling feeding binary and multi-class heads (issue 6, seed 002)."""
