"""The one sample type every dataset format produces, and the dataset protocol."""

from defectkit.data.sample import Box, DefectDataset, Sample

__all__ = ["Box", "DefectDataset", "Sample"]
