"""Files: medical images, model files, the model catalogue, previews, atomic writes."""
