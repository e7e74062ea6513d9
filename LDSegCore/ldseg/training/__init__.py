"""Training: the trainer, its losses, training curves and model presets."""
