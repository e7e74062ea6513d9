"""Diffusion: the noise schedule, forward noising, the parameterization and the samplers."""
