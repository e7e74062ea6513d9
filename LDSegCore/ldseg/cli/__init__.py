"""The ``ldseg`` command line (imports no torch until a command needs it)."""
