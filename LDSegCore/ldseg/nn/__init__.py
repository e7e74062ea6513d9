"""The networks: LDSeg's four (2D or 3D, chosen by the model config) and the
deterministic Res-UNet baseline. Which one a config builds is decided by its
architecture (:mod:`ldseg.architectures`)."""
