"""The LDSeg module's Qt parts (only ``LDSeg.py`` imports this package).

Kept apart from ``LDSegLib`` so that the logic package stays free of Qt, CTK and ``slicer.app``
as a whole (its tests run it on slicer-core in plain Python, and a test checks that no file of
``LDSegLib`` imports Qt). The widget here only turns clicks into calls of
``LDSegLib.logic.ModuleLogic`` and shows what comes back.
"""
