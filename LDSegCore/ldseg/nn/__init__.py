"""The four LDSeg networks (2D or 3D, chosen by the model config) and the
deterministic Res-UNet baseline."""
