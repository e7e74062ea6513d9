"""LDSeg engine: latent diffusion segmentation with per-voxel uncertainty.

The engine knows nothing of 3D Slicer; the Slicer extension drives it through
its command line (``ldseg``) or the :class:`ldseg.inference.segmenter.Segmenter` API.
"""

__version__ = "0.1.0"

#: Version of the model-file format this engine writes and can read.
MODEL_FORMAT_VERSION = 1
