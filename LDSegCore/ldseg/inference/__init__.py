"""Segmenting images: the Segmenter, batched sampling, fast paths, restoring to the input grid."""
