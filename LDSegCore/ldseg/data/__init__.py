"""Data sets, augmentation and image preparation (intensity, model grid, label values)."""
