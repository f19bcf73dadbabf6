"""Supervised few-shot defect segmentation, the copy-paste generator, and the segmentation loop."""
