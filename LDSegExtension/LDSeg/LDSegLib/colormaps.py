"""Perceptual color tables for the uncertainty overlay, built in code.

Slicer ships Inferno as a color file; ``slicer-core`` and stripped installs do
not. :func:`getInfernoColorNode` returns Slicer's node when the scene has it and
otherwise builds an equivalent 256-entry ``vtkMRMLColorTableNode``.
"""

import slicer

#: Inferno sampled at 33 evenly spaced points (0..255 RGB); interpolated linearly to 256 entries.
INFERNO_POINTS = (
    (0, 0, 4),
    (4, 3, 18),
    (11, 7, 36),
    (21, 11, 55),
    (33, 12, 74),
    (47, 10, 91),
    (61, 9, 101),
    (74, 12, 107),
    (87, 16, 110),
    (100, 21, 110),
    (113, 25, 110),
    (125, 30, 109),
    (138, 34, 106),
    (151, 39, 102),
    (163, 44, 97),
    (176, 49, 91),
    (188, 55, 84),
    (199, 62, 76),
    (210, 70, 68),
    (219, 80, 59),
    (228, 90, 49),
    (235, 102, 40),
    (241, 115, 29),
    (246, 128, 19),
    (249, 142, 9),
    (251, 157, 7),
    (252, 172, 17),
    (251, 188, 33),
    (249, 203, 53),
    (245, 219, 76),
    (242, 234, 105),
    (243, 246, 138),
    (252, 255, 164),
)

#: Name of the color node this module creates when Slicer's Inferno is absent.
LDSEG_INFERNO_NAME = "LDSeg Inferno"


def infernoTable(numberOfColors=256):
    """List of ``numberOfColors`` (r, g, b) floats in [0, 1] along the Inferno map."""
    n = len(INFERNO_POINTS) - 1
    table = []
    for i in range(numberOfColors):
        x = i / (numberOfColors - 1) * n
        k = min(int(x), n - 1)
        t = x - k
        a, b = INFERNO_POINTS[k], INFERNO_POINTS[k + 1]
        table.append(tuple(((1 - t) * a[c] + t * b[c]) / 255.0 for c in range(3)))
    return table


def _findSlicerInferno(scene):
    for i in range(scene.GetNumberOfNodesByClass("vtkMRMLColorNode")):
        node = scene.GetNthNodeByClass(i, "vtkMRMLColorNode")
        if node.GetName() == "Inferno":
            return node
    return None


def getInfernoColorNode(scene):
    """Slicer's Inferno color node if present, else this module's code-built one (created once)."""
    node = _findSlicerInferno(scene)
    if node is not None:
        return node
    for i in range(scene.GetNumberOfNodesByClass("vtkMRMLColorTableNode")):
        node = scene.GetNthNodeByClass(i, "vtkMRMLColorTableNode")
        if node.GetName() == LDSEG_INFERNO_NAME:
            return node
    node = slicer.vtkMRMLColorTableNode()
    node.SetName(LDSEG_INFERNO_NAME)
    node.SetTypeToUser()
    node.SetHideFromEditors(False)
    colors = infernoTable(256)
    node.SetNumberOfColors(len(colors))
    for i, (r, g, b) in enumerate(colors):
        node.SetColor(i, r, g, b, 1.0)
    node.SetAttribute("Category", "LDSeg")
    scene.AddNode(node)
    return node
