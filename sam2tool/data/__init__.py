"""Data: annotation formats, the canonical layout and manifest, datasets, transforms, DataModule."""
