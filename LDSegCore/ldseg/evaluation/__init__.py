"""Measuring results: segmentation metrics, uncertainty metrics, per-case evaluation, perturbations."""
