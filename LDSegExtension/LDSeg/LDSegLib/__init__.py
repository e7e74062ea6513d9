"""Qt-free logic of the LDSeg 3D Slicer module.

Everything here runs in plain Python with the MRML classes of Slicer (or of the
``slicer-core`` package): no ``qt``, ``ctk`` or ``slicer.app``. The panel
(``LDSegWidgets``, imported only by the module file ``LDSeg.py``) wires the ``.ui`` to these pieces.

- :mod:`.logic`        the module logic (models, runs, corrected cases, fine-tune loop)
- :mod:`.models`       the model list (in-process, headers only: no torch) and the catalogue
- :mod:`.cases`        corrected cases for fine-tuning, and how a result changed
- :mod:`.terminology`  standard (DICOM / SNOMED CT) terminology on segments
- :mod:`.selftest`     the module's self-test body
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

#: Oldest supported 3D Slicer: 5.8 (Python 3.9). Every file the module ships, and the engine it runs
#: in Slicer's Python, keeps to Python 3.9 (checked by ``vermin`` and ruff's target in scripts/test.sh).
MINIMUM_SLICER = "5.8"
MINIMUM_PYTHON = (3, 9)


def slicerTooOld(major, minor):
    """A sentence when Slicer ``major.minor`` is older than :data:`MINIMUM_SLICER`, else None."""
    need = tuple(int(x) for x in MINIMUM_SLICER.split("."))
    if (int(major), int(minor)) < need:
        return f"LDSeg needs 3D Slicer {MINIMUM_SLICER} or later; this is {major}.{minor}. Please update Slicer."
    return None
