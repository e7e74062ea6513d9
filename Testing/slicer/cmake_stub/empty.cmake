# (intentionally empty: Slicer's extension config / CPack includes)
