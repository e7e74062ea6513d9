"""Qt-free logic of the LDSeg 3D Slicer module.

Everything here runs in plain Python with the MRML classes of Slicer (or of the
``slicer-core`` package): no ``qt``, ``ctk`` or ``slicer.app``. The module file
``LDSeg.py`` only wires its ``.ui`` to these pieces.

- :mod:`.parameters`   the parameter node (GUI state) and the run settings
- :mod:`.dependencies` torch / engine checks, installation with confirmation
- :mod:`.runner`       engine subprocess, JSON progress, cancel, state machine
- :mod:`.segment`      one segmentation run: input export, engine call, import
- :mod:`.training`     fine-tuning: data set export, ``ldseg train`` run
- :mod:`.sceneio`      results into the scene (segments, SD overlay, ROI paste)
- :mod:`.review`       per-segment statistics, uncertain regions, "uncertain" segment
- :mod:`.colormaps`    the Inferno-like color table built in code
"""

#: Version of this Slicer module; the engine (``ldseg``) must agree on major.minor.
MODULE_VERSION = "0.1.0"
