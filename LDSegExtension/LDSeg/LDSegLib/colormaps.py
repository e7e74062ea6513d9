"""Perceptual color tables for the overlays, built in code: Inferno (the SD), Viridis (the class frequency).

Slicer ships both as color files; ``slicer-core`` and stripped installs do
not. :func:`getInfernoColorNode` and :func:`getViridisColorNode` return
Slicer's node when the scene has it and otherwise build an equivalent
256-entry ``vtkMRMLColorTableNode``.
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

#: Viridis at 9 evenly spaced points (0..255 RGB): the class-frequency overlay, distinct from the SD's Inferno.
VIRIDIS_POINTS = (
    (68, 1, 84),
    (71, 44, 122),
    (59, 81, 139),
    (44, 113, 142),
    (33, 144, 141),
    (39, 173, 129),
    (92, 200, 99),
    (170, 220, 50),
    (253, 231, 37),
)

#: Names of the color nodes this module creates when Slicer's are absent.
LDSEG_INFERNO_NAME = "LDSeg Inferno"
LDSEG_VIRIDIS_NAME = "LDSeg Viridis"


def infernoTable(numberOfColors=256):
    """List of ``numberOfColors`` (r, g, b) floats in [0, 1] along the Inferno map."""
    return _interpolated(INFERNO_POINTS, numberOfColors)


def _interpolated(points, numberOfColors):
    n = len(points) - 1
    table = []
    for i in range(numberOfColors):
        x = i / (numberOfColors - 1) * n
        k = min(int(x), n - 1)
        t = x - k
        a, b = points[k], points[k + 1]
        table.append(tuple(((1 - t) * a[c] + t * b[c]) / 255.0 for c in range(3)))
    return table


def _findSlicerColorNode(scene, name):
    for i in range(scene.GetNumberOfNodesByClass("vtkMRMLColorNode")):
        node = scene.GetNthNodeByClass(i, "vtkMRMLColorNode")
        if node.GetName() == name:
            return node
    return None


def _colorNode(scene, slicerName, ownName, points):
    """Slicer's color node ``slicerName`` if present, else this module's code-built one (created once)."""
    node = _findSlicerColorNode(scene, slicerName)
    if node is not None:
        return node
    for i in range(scene.GetNumberOfNodesByClass("vtkMRMLColorTableNode")):
        node = scene.GetNthNodeByClass(i, "vtkMRMLColorTableNode")
        if node.GetName() == ownName:
            return node
    node = slicer.vtkMRMLColorTableNode()
    node.SetName(ownName)
    node.SetTypeToUser()
    node.SetHideFromEditors(False)
    colors = _interpolated(points, 256)
    node.SetNumberOfColors(len(colors))
    for i, (r, g, b) in enumerate(colors):
        node.SetColor(i, r, g, b, 1.0)
    node.SetAttribute("Category", "LDSeg")
    scene.AddNode(node)
    return node


def getInfernoColorNode(scene):
    """Slicer's Inferno color node if present, else this module's code-built one (created once)."""
    return _colorNode(scene, "Inferno", LDSEG_INFERNO_NAME, INFERNO_POINTS)


def getViridisColorNode(scene):
    """Slicer's Viridis color node if present, else this module's code-built one (created once)."""
    return _colorNode(scene, "Viridis", LDSEG_VIRIDIS_NAME, VIRIDIS_POINTS)
