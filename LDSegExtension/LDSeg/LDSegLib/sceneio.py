"""Engine results into the MRML scene, and volumes out of it for the engine.

Only MRML / VTK / numpy: this runs unchanged inside Slicer and against the
``slicer-core`` package in plain Python (the extension's tests).

Conventions: numpy arrays of volumes are indexed ``[k, j, i]`` (``[k, j, i, c]``
for vector volumes), like ``slicer.util.arrayFromVolume``; an *extent* is
``((i0, i1), (j0, j1), (k0, k1))`` with exclusive upper ends, in the input's voxels.
"""

import dataclasses
import json
import math
import os

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

from .colormaps import getInfernoColorNode
from .terminology import applyToSegment

#: Node reference roles / attributes the module writes on the nodes it creates.
REF_UNCERTAINTY = "LDSeg.Uncertainty"
REF_PROBABILITY = "LDSeg.Probability"
REF_CLASS_COLORS = "LDSeg.ClassColors"
REF_INPUT = "LDSeg.Input"
REF_SAMPLES = "LDSeg.Samples"  # the sequence browser of the individual samples
REF_FREQUENCY = "LDSeg.Frequency"  # the class-frequency volume (made on request)
ATTR_CLASSES = "LDSeg.Classes"  # JSON: the model's classes, on the samples' sequence node
ATTR_MODEL = "LDSeg.Model"
ATTR_RESULT = "LDSeg.Result"
TAG_CLASS_NAME = "LDSeg.ClassName"

#: Geometry agreement demanded between the engine's output and the volume it was given (mm).
GEOMETRY_TOLERANCE_MM = 1e-3


class GeometryMismatchError(ValueError):
    """The engine's output is not on the geometry of the volume it was given."""


# --------------------------------------------------------------------------- geometry helpers


def _matrixArray(m):
    return np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])


def ijkToRasArray(volumeNode):
    """The node's IJK-to-RAS matrix as a 4x4 numpy array (its own RAS: parent transforms not applied)."""
    m = vtk.vtkMatrix4x4()
    volumeNode.GetIJKToRASMatrix(m)
    return _matrixArray(m)


def setIjkToRasArray(volumeNode, matrix):
    m = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            m.SetElement(r, c, float(matrix[r][c]))
    volumeNode.SetIJKToRASMatrix(m)


def volumeShape(volumeNode):
    """(k, j, i) shape of the node's voxel grid."""
    dims = volumeNode.GetImageData().GetDimensions()
    return (dims[2], dims[1], dims[0])


def arrayFromImage(volumeNode):
    """Copy of the node's voxels as numpy, ``[k, j, i]`` or ``[k, j, i, c]`` (no scene needed)."""
    image = volumeNode.GetImageData()
    dims = image.GetDimensions()
    scalars = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
    comps = image.GetNumberOfScalarComponents()
    shape = (dims[2], dims[1], dims[0]) + ((comps,) if comps > 1 else ())
    return scalars.reshape(shape).copy()


def imageFromArray(array):
    """vtkImageData holding a copy of ``array`` (``[k, j, i]`` or ``[k, j, i, c]``)."""
    array = np.ascontiguousarray(array)
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    comps = array.shape[3] if array.ndim == 4 else 1
    image = vtk.vtkImageData()
    image.SetDimensions(array.shape[2], array.shape[1], array.shape[0])
    flat = array.reshape(-1, comps) if comps > 1 else array.reshape(-1)
    vtkArray = numpy_support.numpy_to_vtk(flat, deep=True, array_type=numpy_support.get_vtk_array_type(array.dtype))
    vtkArray.SetNumberOfComponents(comps)
    image.GetPointData().SetScalars(vtkArray)
    return image


def fullExtent(volumeNode):
    k, j, i = volumeShape(volumeNode)
    return ((0, i), (0, j), (0, k))


def extentGeometry(volumeNode, extent):
    """IJK-to-RAS of the sub-grid ``extent`` of ``volumeNode`` (same axes, shifted origin)."""
    matrix = ijkToRasArray(volumeNode)
    start = np.array([extent[0][0], extent[1][0], extent[2][0], 1.0])
    shifted = matrix.copy()
    shifted[:3, 3] = (matrix @ start)[:3]
    return shifted


def worldToLocalMatrix(node):
    """4x4 from world RAS to the node's own (untransformed) RAS: the inverse of its parent transforms.

    Identity when the node is not transformed. A non-linear transform (grid, B-spline, thin plate)
    cannot be applied to a voxel grid by a matrix: ValueError saying so.
    """
    parent = node.GetParentTransformNode()
    if parent is None:
        return np.eye(4)
    if not parent.IsTransformToWorldLinear():
        raise ValueError(
            f"'{node.GetName()}' is under the non-linear transform '{parent.GetName()}'. "
            "Harden the transform on it (Data module: right-click, Harden transform) or remove it, then try again."
        )
    m = vtk.vtkMatrix4x4()
    parent.GetMatrixTransformFromWorld(m)
    return _matrixArray(m)


def localToWorldMatrix(node):
    """4x4 from the node's own RAS to world RAS (identity when not transformed)."""
    return np.linalg.inv(worldToLocalMatrix(node))


def checkTransformable(volumeNode):
    """Raise ValueError if the volume's results could not be shown where it is (non-linear transform)."""
    worldToLocalMatrix(volumeNode)


def checkOrthogonalGrid(volumeNode, tolerance=1e-4):
    """Raise ValueError for a sheared voxel grid: image files (and the engine) keep only orthogonal axes."""
    axes = ijkToRasArray(volumeNode)[:3, :3]
    spacing = np.linalg.norm(axes, axis=0)
    if np.any(spacing <= 0):
        raise ValueError(f"The volume '{volumeNode.GetName()}' has a zero voxel spacing.")
    directions = axes / spacing
    if np.abs(directions.T @ directions - np.eye(3)).max() > tolerance:
        raise ValueError(
            f"The volume '{volumeNode.GetName()}' has a sheared (non-orthogonal) voxel grid, which image files "
            "cannot store. Resample it first (Resample Scalar/Vector/DWI Volume, or harden a rigid transform)."
        )


def roiCornersWorld(roiNode):
    """The ROI box's 8 corners in world RAS (its own orientation and parent transforms included)."""
    if hasattr(roiNode, "GetObjectToWorldMatrix") and hasattr(roiNode, "GetSize"):
        objectToWorld = _matrixArray(roiNode.GetObjectToWorldMatrix())
        half = np.array(roiNode.GetSize()) / 2.0
        corners = np.array([[x, y, z, 1.0] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)])
        corners[:, :3] *= half
        return (objectToWorld @ corners.T).T
    bounds = [0.0] * 6
    roiNode.GetRASBounds(bounds)  # world bounds
    return np.array([[x, y, z, 1.0] for x in bounds[0:2] for y in bounds[2:4] for z in bounds[4:6]])


def roiExtent(volumeNode, roiNode):
    """Voxel extent of ``volumeNode`` covered by the ROI (voxel centres inside the box around it).

    Both may be under (linear) transforms: the ROI's world corners are mapped into the volume's
    own voxel grid. Raises ValueError when the ROI misses the volume or a transform is non-linear.
    """
    roiParent = roiNode.GetParentTransformNode()
    if roiParent is not None and not roiParent.IsTransformToWorldLinear():
        raise ValueError(f"The ROI '{roiNode.GetName()}' is under a non-linear transform: harden or remove it.")
    worldToIjk = np.linalg.inv(ijkToRasArray(volumeNode)) @ worldToLocalMatrix(volumeNode)
    ijk = (worldToIjk @ roiCornersWorld(roiNode).T).T[:, :3]
    lo, hi = ijk.min(axis=0), ijk.max(axis=0)
    k, j, i = volumeShape(volumeNode)
    dims = (i, j, k)
    extent = []
    for axis in range(3):
        start = max(0, int(math.ceil(lo[axis] - 1e-6)))
        stop = min(dims[axis], int(math.floor(hi[axis] + 1e-6)) + 1)
        if stop <= start:
            raise ValueError(f"The ROI '{roiNode.GetName()}' does not overlap the volume '{volumeNode.GetName()}'.")
        extent.append((start, stop))
    return tuple(extent)


def cropArray(array, extent):
    (i0, i1), (j0, j1), (k0, k1) = extent
    return array[k0:k1, j0:j1, i0:i1]


def pasteIntoFull(cropped, extent, fullShape, fill=0):
    """Full-size array (``fullShape`` = (k, j, i)) with ``cropped`` placed at ``extent``, ``fill`` elsewhere."""
    shape = tuple(fullShape) + tuple(cropped.shape[3:])
    full = np.full(shape, fill, dtype=cropped.dtype)
    (i0, i1), (j0, j1), (k0, k1) = extent
    expected = (k1 - k0, j1 - j0, i1 - i0)
    if tuple(cropped.shape[:3]) != expected:
        raise GeometryMismatchError(f"Result has {cropped.shape[:3]} voxels (k, j, i), the region sent had {expected}.")
    full[k0:k1, j0:j1, i0:i1] = cropped
    return full


# --------------------------------------------------------------------------- files


def writeVolumeForEngine(volumeNode, path, extent=None):
    """Write ``volumeNode`` (or its ``extent`` sub-grid) to ``path`` (NRRD/NIfTI) with its exact geometry.

    Returns the IJK-to-RAS of what was written (the engine's output must match it).
    Transforms applied to the node are not hardened: the volume's own grid is used, and the
    results go under the same transform (see :func:`importResults`).
    """
    extent = extent or fullExtent(volumeNode)
    array = cropArray(arrayFromImage(volumeNode), extent)
    node = slicer.vtkMRMLVectorVolumeNode() if array.ndim == 4 else slicer.vtkMRMLScalarVolumeNode()
    geometry = extentGeometry(volumeNode, extent)
    setIjkToRasArray(node, geometry)
    node.SetAndObserveImageData(imageFromArray(array))
    writeVolumeNode(node, path)
    return geometry


def writeVolumeNode(node, path):
    """Write a (scene-less) volume node to ``path`` through Slicer's own storage node."""
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storage.SetFileName(str(path))
    storage.SetUseCompression(False)
    if not storage.WriteData(node):
        raise OSError(f"Could not write {path}.")


def readVolumeFile(path, vector=False):
    """Read a volume file into a node that is not in any scene; returns (array, ijkToRAS)."""
    node = slicer.vtkMRMLVectorVolumeNode() if vector else slicer.vtkMRMLScalarVolumeNode()
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storage.SetFileName(str(path))
    if not storage.ReadData(node):
        raise OSError(f"Could not read the engine output {path}.")
    return arrayFromImage(node), ijkToRasArray(node)


def alignToGrid(array, matrix, expectedMatrix):
    """``array`` (``[k, j, i]``) and its IJK-to-RAS, with axes flipped where they run backwards on
    the expected grid. Slicer's file reader gives a volume a right-handed IJK-to-RAS, reversing
    an axis of a left-handed one (e.g. made with ``addVolumeFromArray``): same voxels in space,
    other index order. Anything else (a shift, another spacing) is left for checkGeometry to refuse."""
    relative = np.linalg.inv(expectedMatrix) @ matrix  # read IJK -> expected IJK
    for axis in range(3):
        if relative[axis, axis] < -0.5 and array.shape[2 - axis] > 1:
            n = array.shape[2 - axis]
            flip = np.eye(4)
            flip[axis, axis] = -1.0
            flip[axis, 3] = n - 1
            array = np.flip(array, axis=2 - axis)
            matrix = matrix @ flip
    return np.ascontiguousarray(array), matrix


def checkGeometry(what, array, matrix, expectedMatrix, expectedShape):
    if tuple(array.shape[:3]) != tuple(expectedShape):
        raise GeometryMismatchError(
            f"The engine's {what} has {array.shape[:3]} voxels (k, j, i); the input sent had {tuple(expectedShape)}."
        )
    # Compare voxel positions at the grid's far corner, so direction and spacing errors show in mm.
    far = np.array([expectedShape[2] - 1, expectedShape[1] - 1, expectedShape[0] - 1, 1.0])
    for point in (np.array([0, 0, 0, 1.0]), far):
        distance = np.linalg.norm((matrix @ point)[:3] - (expectedMatrix @ point)[:3])
        if distance > GEOMETRY_TOLERANCE_MM:
            raise GeometryMismatchError(f"The engine's {what} is {distance:.3g} mm off the input's geometry.")


# --------------------------------------------------------------------------- scene helpers


def normalizedColor(color):
    """Model colors may be 0..255 integers or 0..1 floats; returns 0..1 floats."""
    color = [float(c) for c in color[:3]]
    if any(c > 1.0 for c in color):
        color = [c / 255.0 for c in color]
    return tuple(color)


def foregroundClasses(classes):
    return [c for c in classes if int(c["label_value"]) != 0]


def backgroundClassIndex(classes):
    for c in classes:
        if int(c["label_value"]) == 0:
            return int(c["index"])
    return 0


def classColorTable(scene, classes, name):
    """Color table with each class at its label value (names and colors from the model).

    Exporting segments with this table gives the model's label values back.
    """
    node = None
    for i in range(scene.GetNumberOfNodesByClass("vtkMRMLColorTableNode")):
        candidate = scene.GetNthNodeByClass(i, "vtkMRMLColorTableNode")
        if candidate.GetName() == name:
            node = candidate
            break
    if node is None:
        node = slicer.vtkMRMLColorTableNode()
        node.SetName(name)
        node.SetTypeToUser()
        node.SetAttribute("Category", "LDSeg")
        scene.AddNode(node)
    maxValue = max(int(c["label_value"]) for c in classes)
    node.SetNumberOfColors(maxValue + 1)
    for value in range(maxValue + 1):
        node.SetColor(value, "", 0.0, 0.0, 0.0, 0.0)
        if hasattr(node, "SetColorDefined"):
            node.SetColorDefined(value, False)
    for c in classes:
        r, g, b = normalizedColor(c.get("color", (128, 128, 128)))
        value = int(c["label_value"])
        node.SetColor(value, str(c["name"]), r, g, b, 0.0 if value == 0 else 1.0)
        if hasattr(node, "SetColorDefined"):
            node.SetColorDefined(value, True)
    return node


def placeUnder(scene, childNode, parentNode):
    """Put ``childNode`` under ``parentNode`` in the subject hierarchy (items created if needed)."""
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    if sh is None:
        return
    parentItem = sh.GetItemByDataNode(parentNode)
    if not parentItem:
        parentItem = sh.CreateItem(sh.GetSceneItemID(), parentNode)
    childItem = sh.GetItemByDataNode(childNode)
    if not childItem:
        childItem = sh.CreateItem(parentItem, childNode)
    else:
        sh.SetItemParent(childItem, parentItem)


def subjectHierarchyParent(scene, node):
    """Data node of the subject-hierarchy parent of ``node`` (None when none)."""
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    item = sh.GetItemByDataNode(node)
    if not item:
        return None
    return sh.GetItemDataNode(sh.GetItemParent(item))


def sliceCompositeNodes(scene):
    return [
        scene.GetNthNodeByClass(i, "vtkMRMLSliceCompositeNode")
        for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceCompositeNode"))
    ]


def sliceNodes(scene):
    return [
        scene.GetNthNodeByClass(i, "vtkMRMLSliceNode") for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceNode"))
    ]


def _newVolumeLike(scene, className, name, referenceVolume, array):
    node = scene.AddNewNodeByClass(className, scene.GenerateUniqueName(name))
    setIjkToRasArray(node, ijkToRasArray(referenceVolume))
    node.SetAndObserveImageData(imageFromArray(array))
    node.CreateDefaultDisplayNodes()
    return node


# --------------------------------------------------------------------------- SD display


def setUncertaintyDisplay(sdVolumeNode, threshold, windowMax=None):
    """Inferno colormap, window 0..max SD, voxels below ``threshold`` transparent in slice views."""
    scene = sdVolumeNode.GetScene()
    display = sdVolumeNode.GetDisplayNode()
    if display is None:
        sdVolumeNode.CreateDefaultDisplayNodes()
        display = sdVolumeNode.GetDisplayNode()
    display.SetAndObserveColorNodeID(getInfernoColorNode(scene).GetID())
    if windowMax is None:
        windowMax = float(arrayFromImage(sdVolumeNode).max())
    windowMax = max(windowMax, 2.0 * float(threshold), 1e-3)
    display.AutoWindowLevelOff()
    display.SetWindowLevelMinMax(0.0, windowMax)
    display.SetApplyThreshold(True)
    display.SetLowerThreshold(float(threshold))
    display.SetUpperThreshold(max(windowMax, 1.0) + 1.0)
    display.SetInterpolate(False)


def showUncertaintyOverlay(scene, inputVolumeNode, sdVolumeNode, opacity):
    """Input as background, SD as foreground with ``opacity`` in every slice view."""
    for composite in sliceCompositeNodes(scene):
        if inputVolumeNode is not None and not composite.GetBackgroundVolumeID():
            composite.SetBackgroundVolumeID(inputVolumeNode.GetID())
        composite.SetForegroundVolumeID(sdVolumeNode.GetID() if sdVolumeNode else None)
        composite.SetForegroundOpacity(float(opacity))


def setOverlayOpacity(scene, sdVolumeNode, opacity):
    for composite in sliceCompositeNodes(scene):
        if sdVolumeNode is not None and composite.GetForegroundVolumeID() == sdVolumeNode.GetID():
            composite.SetForegroundOpacity(float(opacity))


def setOverlayThreshold(sdVolumeNode, threshold):
    display = sdVolumeNode.GetDisplayNode()
    if display is not None:
        display.SetLowerThreshold(float(threshold))


# --------------------------------------------------------------------------- import


@dataclasses.dataclass
class ImportedResult:
    segmentationNode: object
    uncertaintyVolumeNode: object
    probabilityVolumeNode: object
    colorTableNode: object
    classes: list
    result: dict
    labels: object = None  # the engine's label map on the input's full grid ([k, j, i]), before any edit
    sampleBrowserNode: object = None  # the samples' sequence browser, when the result has the samples


def readResultJson(path):
    with open(path, encoding="utf-8") as f:
        result = json.load(f)
    for key in ("classes", "files"):
        if key not in result:
            raise ValueError(f"{path} has no '{key}': not an LDSeg result.")
    return result


def _resolve(path, baseDir):
    if path and not os.path.isabs(path) and baseDir:
        return os.path.join(baseDir, path)
    return path


def importResults(
    scene,
    inputVolumeNode,
    result,
    extent=None,
    baseDir=None,
    sdThreshold=0.1,
    sdOpacity=0.6,
    withProbability=False,
    showOverlay=True,
    modelTitle=None,
    terminology=None,
):
    """Add an engine result (the parsed ``<stem>_result.json``) to the scene.

    ``extent``: the input's voxel extent that was sent to the engine (ROI crop);
    results are pasted back there, zero elsewhere. Geometry is checked against
    the input's own grid, so a misplaced result raises instead of being shown. New nodes go under
    the input's parent transform, so they overlay it wherever it is. ``terminology``: {class name:
    entry} set on the segments (standard codes), else what the result's classes carry.
    """
    checkTransformable(inputVolumeNode)
    terminology = dict(terminology or {})
    extent = extent or fullExtent(inputVolumeNode)
    fullShape = volumeShape(inputVolumeNode)
    expectedMatrix = extentGeometry(inputVolumeNode, extent)
    (i0, i1), (j0, j1), (k0, k1) = extent
    expectedShape = (k1 - k0, j1 - j0, i1 - i0)
    classes = sorted(result["classes"], key=lambda c: int(c["index"]))
    files = result["files"]
    inputName = inputVolumeNode.GetName()
    modelTitle = modelTitle or os.path.splitext(os.path.basename(str(result.get("model", "model"))))[0]

    # Read and check everything before touching the scene.
    labels, labelsMatrix = alignToGrid(*readVolumeFile(_resolve(files["labels"], baseDir)), expectedMatrix)
    if labels.ndim == 4:
        raise GeometryMismatchError("The engine's label map has several components.")
    checkGeometry("label map", labels, labelsMatrix, expectedMatrix, expectedShape)
    known = {int(c["label_value"]) for c in classes}
    unknown = sorted(set(np.unique(labels).astype(int).tolist()) - known)
    if unknown:
        raise ValueError(f"The label map has values {unknown} that the model's classes do not list.")
    sd, sdMatrix = alignToGrid(*readVolumeFile(_resolve(files["sd"], baseDir)), expectedMatrix)
    checkGeometry("uncertainty map", sd, sdMatrix, expectedMatrix, expectedShape)
    probabilities = None
    if withProbability and files.get("probabilities"):
        probabilities, probMatrix = alignToGrid(
            *readVolumeFile(_resolve(files["probabilities"], baseDir), vector=True), expectedMatrix
        )
        checkGeometry("probabilities", probabilities, probMatrix, expectedMatrix, expectedShape)
    samples = None
    if files.get("samples"):
        samples = readSamples(_resolve(files["samples"], baseDir), result, known, expectedMatrix, expectedShape)

    labelsDtype = np.int16 if max(known) < 32768 else np.int32
    labelsFull = pasteIntoFull(labels.astype(labelsDtype), extent, fullShape)
    sdFull = pasteIntoFull(sd.astype(np.float32), extent, fullShape)

    colorTable = classColorTable(scene, classes, f"LDSeg {modelTitle} classes")

    # Segmentation: one segment per foreground class, named/colored/label-valued from the model.
    segmentationNode = scene.AddNewNodeByClass(
        "vtkMRMLSegmentationNode", scene.GenerateUniqueName(f"{inputName} LDSeg")
    )
    segmentationNode.CreateDefaultDisplayNodes()
    segmentationNode.SetReferenceImageGeometryParameterFromVolumeNode(inputVolumeNode)
    labelmapNode = slicer.vtkMRMLLabelMapVolumeNode()
    setIjkToRasArray(labelmapNode, ijkToRasArray(inputVolumeNode))
    labelmapNode.SetAndObserveImageData(imageFromArray(labelsFull))
    scene.AddNode(labelmapNode)  # the import needs the node in the scene; removed right after
    try:
        ok = slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelmapNode, segmentationNode)
    finally:
        scene.RemoveNode(labelmapNode)
    if not ok:
        scene.RemoveNode(segmentationNode)
        raise RuntimeError("Slicer could not import the label map into a segmentation.")
    segmentation = segmentationNode.GetSegmentation()
    byValue = {}
    for n in range(segmentation.GetNumberOfSegments()):
        segment = segmentation.GetNthSegment(n)
        byValue[int(segment.GetLabelValue())] = segmentation.GetNthSegmentID(n)
    for position, c in enumerate(foregroundClasses(classes)):
        value = int(c["label_value"])
        segmentId = byValue.get(value)
        if segmentId is None:  # class absent from this image: still offered, empty, for editing
            segmentId = segmentation.AddEmptySegment(
                "", str(c["name"]), normalizedColor(c.get("color", (128, 128, 128)))
            )
        segment = segmentation.GetSegment(segmentId)
        segment.SetName(str(c["name"]))
        segment.SetColor(*normalizedColor(c.get("color", (128, 128, 128))))
        segment.SetLabelValue(value)
        segment.SetTag(TAG_CLASS_NAME, str(c["name"]))
        applyToSegment(segment, terminology.get(str(c["name"])) or c.get("terminology"))
        segmentation.SetSegmentIndex(segmentId, position)
    display = segmentationNode.GetDisplayNode()
    display.SetVisibility(True)
    display.SetVisibility2DFill(True)
    display.SetVisibility2DOutline(True)
    display.SetVisibility3D(True)
    segmentationNode.CreateClosedSurfaceRepresentation()
    segmentationNode.SetNodeReferenceID(REF_CLASS_COLORS, colorTable.GetID())
    segmentationNode.SetNodeReferenceID(REF_INPUT, inputVolumeNode.GetID())
    segmentationNode.SetAttribute(ATTR_MODEL, str(result.get("model", "")))
    segmentationNode.SetAttribute(
        ATTR_RESULT,
        json.dumps({k: result.get(k) for k in ("model", "device", "samples", "steps", "sampler", "seconds")}),
    )

    # Uncertainty (SD of the foreground probability over the samples).
    sdNode = _newVolumeLike(
        scene, "vtkMRMLScalarVolumeNode", f"{inputName} LDSeg uncertainty (SD)", inputVolumeNode, sdFull
    )
    setUncertaintyDisplay(sdNode, sdThreshold)
    segmentationNode.SetNodeReferenceID(REF_UNCERTAINTY, sdNode.GetID())

    probabilityNode = None
    if probabilities is not None:
        background = backgroundClassIndex(classes)
        foreground = 1.0 - probabilities[..., background] if probabilities.ndim == 4 else probabilities
        probFull = pasteIntoFull(foreground.astype(np.float32), extent, fullShape)
        probabilityNode = _newVolumeLike(
            scene, "vtkMRMLScalarVolumeNode", f"{inputName} LDSeg foreground probability", inputVolumeNode, probFull
        )
        probDisplay = probabilityNode.GetDisplayNode()
        probDisplay.AutoWindowLevelOff()
        probDisplay.SetWindowLevelMinMax(0.0, 1.0)
        segmentationNode.SetNodeReferenceID(REF_PROBABILITY, probabilityNode.GetID())

    browserNode = None
    if samples is not None:
        full = [pasteIntoFull(sample.astype(labelsDtype), extent, fullShape) for sample in samples]
        browserNode = addSampleSequence(scene, inputVolumeNode, full, colorTable, classes)
        segmentationNode.SetNodeReferenceID(REF_SAMPLES, browserNode.GetID())

    for node in (segmentationNode, sdNode, probabilityNode):
        if node is not None:
            node.SetAndObserveTransformNodeID(inputVolumeNode.GetTransformNodeID())
            placeUnder(scene, node, inputVolumeNode)
    if showOverlay:
        showUncertaintyOverlay(scene, inputVolumeNode, sdNode, sdOpacity)
    return ImportedResult(
        segmentationNode, sdNode, probabilityNode, colorTable, classes, result, labelsFull, browserNode
    )


def readSamples(path, result, knownValues, expectedMatrix, expectedShape):
    """The engine's samples file as a list of ``[k, j, i]`` label maps, checked like the label map."""
    array, matrix = readVolumeFile(path, vector=True)
    if array.ndim == 3:  # one sample (a deterministic model): a single-component file
        array = array[..., np.newaxis]
    array, matrix = alignToGrid(array, matrix, expectedMatrix)
    checkGeometry("samples", array, matrix, expectedMatrix, expectedShape)
    count = array.shape[3]
    if result.get("samples") is not None and count != int(result["samples"]):
        raise ValueError(f"The samples file holds {count} samples; the result says {result['samples']}.")
    unknown = sorted(set(np.unique(array).astype(int).tolist()) - set(knownValues))
    if unknown:
        raise ValueError(f"The samples have values {unknown} that the model's classes do not list.")
    return [np.ascontiguousarray(array[..., n]) for n in range(count)]


def addSampleSequence(scene, inputVolumeNode, samples, colorTable, classes):
    """A sequence of the samples' label maps (index "sample", 1..N) and its browser, whose proxy label map
    shows one sample at a time: Slicer's Sequences toolbar and this module both step through it."""
    inputName = inputVolumeNode.GetName()
    sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", scene.GenerateUniqueName(f"{inputName} LDSeg samples"))
    sequence.SetIndexName("sample")
    sequence.SetIndexUnit("")
    sequence.SetIndexType(sequence.NumericIndex)
    sequence.SetAttribute(ATTR_CLASSES, json.dumps([{k: c.get(k) for k in ("name", "label_value")} for c in classes]))
    matrix = ijkToRasArray(inputVolumeNode)
    for n, sample in enumerate(samples):
        node = slicer.vtkMRMLLabelMapVolumeNode()
        setIjkToRasArray(node, matrix)
        node.SetAndObserveImageData(imageFromArray(sample))
        sequence.SetDataNodeAtValue(node, str(n + 1))  # the sequence keeps its own copy
    browser = scene.AddNewNodeByClass(
        "vtkMRMLSequenceBrowserNode", scene.GenerateUniqueName(f"{inputName} LDSeg samples browser")
    )
    primary = getattr(browser, "SetAndObservePrimarySequenceNodeID", None) or browser.SetAndObserveMasterSequenceNodeID
    primary(sequence.GetID())
    proxy = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", scene.GenerateUniqueName(f"{inputName} LDSeg sample"))
    setIjkToRasArray(proxy, matrix)
    proxy.SetAndObserveImageData(imageFromArray(samples[0]))
    proxy.CreateDefaultDisplayNodes()
    proxy.GetDisplayNode().SetAndObserveColorNodeID(colorTable.GetID())
    browser.AddProxyNode(proxy, sequence, False)
    browser.SetSaveChanges(sequence, False)  # edits of the shown sample never go back into the samples
    browser.SetOverwriteProxyName(sequence, False)  # keep the proxy's clear name
    browser.SetSelectedItemNumber(0)
    proxy.SetAndObserveTransformNodeID(inputVolumeNode.GetTransformNodeID())
    for node in (sequence, browser, proxy):
        placeUnder(scene, node, inputVolumeNode)
    return browser


def exportLabelValues(segmentationNode, referenceVolumeNode, colorTableNode=None, segmentIds=None):
    """Label map array (``[k, j, i]``) of the segments on the reference grid, with the model's label values."""
    segmentation = segmentationNode.GetSegmentation()
    ids = vtk.vtkStringArray()
    for n in range(segmentation.GetNumberOfSegments()):
        segmentId = segmentation.GetNthSegmentID(n)
        if segmentIds is None or segmentId in segmentIds:
            ids.InsertNextValue(segmentId)
    if colorTableNode is None:
        colorTableNode = segmentationNode.GetNodeReference(REF_CLASS_COLORS)
    labelmapNode = slicer.vtkMRMLLabelMapVolumeNode()
    scene = segmentationNode.GetScene()
    scene.AddNode(labelmapNode)
    try:
        ok = slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
            segmentationNode,
            ids,
            labelmapNode,
            referenceVolumeNode,
            slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY,
            colorTableNode,
        )
        if not ok:
            raise RuntimeError("Slicer could not export the segments to a label map.")
        return arrayFromImage(labelmapNode)
    finally:
        scene.RemoveNode(labelmapNode)
