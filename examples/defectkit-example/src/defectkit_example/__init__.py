"""A minimal defectkit plugin: a per-pixel z-score anomaly detector."""
