"""Results into the scene, on slicer-core's real MRML: segments, geometry, SD overlay, ROI paste-back."""

import numpy as np
import pytest
import SimpleITK as sitk
import vtk
from slicertesting import PROSTATE_CLASSES, loadVolume, slicer, syntheticSd, writeEngineOutputs

from LDSegLib import colormaps, sceneio

PROSTATE = "prostate_phantom_subvolume.nrrd"
PROSTATE_LABEL = "prostate_phantom_subvolume-label.nrrd"


def sitkArray(path):
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def nodeCount(scene):
    return scene.GetNumberOfNodes()


def obliqueCopy(path, outPath):
    """The same voxels with IJK axes rotated 30 degrees about an oblique axis (a real non-identity direction)."""
    image = sitk.ReadImage(str(path))
    rotation = sitk.VersorTransform((1.0, 2.0, 0.5), np.deg2rad(30.0))
    direction = np.array(rotation.GetMatrix()).reshape(3, 3) @ np.array(image.GetDirection()).reshape(3, 3)
    image.SetDirection(direction.ravel().tolist())
    sitk.WriteImage(image, str(outPath))
    return outPath


@pytest.fixture(params=["sample-file", "oblique"])
def prostate(request, scene, samples, tmp_path):
    """The phantom (anisotropic, LPS directions -1, -1, 1) as stored, and turned oblique;
    engine-format outputs for it (labels 0, 1, 7, 8, 9 from its label map)."""
    inputPath = samples / PROSTATE
    if request.param == "oblique":
        inputPath = obliqueCopy(inputPath, tmp_path / "oblique.nrrd")
    volume = loadVolume(scene, inputPath, name="prostate")
    labels = sitkArray(samples / PROSTATE_LABEL).astype(np.int16)
    sd = syntheticSd(labels.shape)
    rng = np.random.default_rng(1)
    probabilities = rng.dirichlet(np.ones(len(PROSTATE_CLASSES)), size=labels.shape).astype(np.float32)
    result = writeEngineOutputs(tmp_path / "out", inputPath, labels, sd, probabilities)
    return volume, labels, sd, probabilities, result


def test_input_geometry_is_not_trivial(prostate, request):
    volume = prostate[0]
    matrix = sceneio.ijkToRasArray(volume)
    spacing = np.linalg.norm(matrix[:3, :3], axis=0)
    np.testing.assert_allclose(spacing, [0.5, 0.5, 3.0])  # anisotropic
    assert not np.allclose(matrix[:3, 3], 0)
    if "oblique" in request.node.name:
        assert not np.allclose(np.abs(matrix[:3, :3] / spacing), np.eye(3), atol=0.1)


def test_segmentation_named_colored_on_input_geometry(scene, prostate):
    volume, labels, sd, probabilities, result = prostate
    imported = sceneio.importResults(scene, volume, result, sdThreshold=0.1, sdOpacity=0.45, withProbability=True)
    segmentationNode = imported.segmentationNode
    segmentation = segmentationNode.GetSegmentation()
    foreground = [c for c in PROSTATE_CLASSES if c["label_value"] != 0]

    # one segment per class, in the model's order, named, colored and label-valued from the model
    segments = [segmentation.GetNthSegment(n) for n in range(segmentation.GetNumberOfSegments())]
    assert [s.GetName() for s in segments] == [c["name"] for c in foreground]
    assert [s.GetLabelValue() for s in segments] == [c["label_value"] for c in foreground]
    for segment, c in zip(segments, foreground):
        np.testing.assert_allclose(segment.GetColor(), np.array(c["color"]) / 255.0, atol=1e-9)

    # exported with the model's color table: the engine's label map, voxel for voxel, on the input's grid
    exported = sceneio.exportLabelValues(segmentationNode, volume)
    assert exported.shape == labels.shape
    np.testing.assert_array_equal(exported, labels)

    # the segmentation's own reference geometry is the input's
    labelmapNode = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")
    assert slicer.vtkSlicerSegmentationsModuleLogic.ExportAllSegmentsToLabelmapNode(
        segmentationNode, labelmapNode, slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY
    )
    np.testing.assert_allclose(sceneio.ijkToRasArray(labelmapNode), sceneio.ijkToRasArray(volume), atol=1e-9)
    np.testing.assert_array_equal(sceneio.arrayFromImage(labelmapNode) > 0, labels > 0)

    # an absent class is still offered as an (empty) segment
    urethra = segmentation.GetSegment(segmentation.GetSegmentIdBySegmentName("urethra"))
    assert urethra is not None and urethra.GetLabelValue() == 12

    # visible in 2D and 3D, under the input in the subject hierarchy
    display = segmentationNode.GetDisplayNode()
    assert display.GetVisibility() and display.GetVisibility2DFill() and display.GetVisibility3D()
    assert segmentation.ContainsRepresentation(
        slicer.vtkSegmentationConverter.GetSegmentationClosedSurfaceRepresentationName()
    )
    for node in (segmentationNode, imported.uncertaintyVolumeNode, imported.probabilityVolumeNode):
        assert sceneio.subjectHierarchyParent(scene, node) is volume

    # mean foreground probability on request: 1 - P(background)
    probability = sceneio.arrayFromImage(imported.probabilityVolumeNode)
    np.testing.assert_allclose(probability, 1.0 - probabilities[..., 0], atol=1e-6)
    np.testing.assert_allclose(sceneio.ijkToRasArray(imported.probabilityVolumeNode), sceneio.ijkToRasArray(volume))


def test_uncertainty_volume_colormap_and_overlay(scene, prostate):
    volume, labels, sd, _, result = prostate
    imported = sceneio.importResults(scene, volume, result, sdThreshold=0.12, sdOpacity=0.45)
    sdNode = imported.uncertaintyVolumeNode
    np.testing.assert_array_equal(sceneio.arrayFromImage(sdNode), sd)
    np.testing.assert_allclose(sceneio.ijkToRasArray(sdNode), sceneio.ijkToRasArray(volume), atol=1e-9)
    assert imported.probabilityVolumeNode is None  # not requested

    display = sdNode.GetDisplayNode()
    colorNode = display.GetColorNode()
    assert colorNode.GetName() in ("Inferno", colormaps.LDSEG_INFERNO_NAME)
    assert colorNode.GetNumberOfColors() == 256
    rgba = [0.0] * 4
    colorNode.GetColor(255, rgba)
    np.testing.assert_allclose(rgba[:3], np.array([252, 255, 164]) / 255.0, atol=2 / 255)
    assert not display.GetAutoWindowLevel()
    assert display.GetWindowLevelMin() == pytest.approx(0.0)
    assert display.GetWindowLevelMax() == pytest.approx(float(sd.max()), rel=1e-6)
    assert display.GetApplyThreshold() and display.GetLowerThreshold() == pytest.approx(0.12)

    composites = sceneio.sliceCompositeNodes(scene)
    assert len(composites) == 3
    for composite in composites:
        assert composite.GetBackgroundVolumeID() == volume.GetID()
        assert composite.GetForegroundVolumeID() == sdNode.GetID()
        assert composite.GetForegroundOpacity() == pytest.approx(0.45)

    sceneio.setOverlayOpacity(scene, sdNode, 0.8)
    sceneio.setOverlayThreshold(sdNode, 0.2)
    assert all(c.GetForegroundOpacity() == pytest.approx(0.8) for c in composites)
    assert display.GetLowerThreshold() == pytest.approx(0.2)


def test_inferno_built_in_code_is_perceptually_ordered(scene):
    node = colormaps.getInfernoColorNode(scene)
    assert colormaps.getInfernoColorNode(scene) is node  # built once
    assert node.GetNumberOfColors() == 256
    rgba = [0.0] * 4
    luminance = []
    for i in range(256):
        node.GetColor(i, rgba)
        luminance.append(0.2126 * rgba[0] + 0.7152 * rgba[1] + 0.0722 * rgba[2])
    node.GetColor(0, rgba)
    np.testing.assert_allclose(rgba[:3], np.array([0, 0, 4]) / 255.0, atol=1 / 255)
    # rises monotonically (up to the 8-bit quantization of color table entries)
    assert np.all(np.diff(luminance) > -2 / 255) and luminance[-1] - luminance[0] > 0.9, (
        "Inferno's luminance must rise monotonically"
    )


def test_roi_result_pasted_back_at_the_right_voxels(scene, samples, tmp_path):
    inputPath = samples / PROSTATE
    volume = loadVolume(scene, inputPath, name="prostate")
    fullLabels = sitkArray(samples / PROSTATE_LABEL).astype(np.int16)
    matrix = sceneio.ijkToRasArray(volume)

    roi = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "roi")
    centre = (matrix @ np.array([40.0, 30.0, 6.0, 1.0]))[:3]
    roi.SetCenter(*centre)
    roi.SetSize(12.3, 9.7, 10.0)  # mm; not whole voxels
    extent = sceneio.roiExtent(volume, roi)

    # independent check: the extent is the box of voxels whose centres lie in the ROI's RAS bounds
    bounds = [0.0] * 6
    roi.GetRASBounds(bounds)
    k, j, i = np.indices(fullLabels.shape)
    ras = np.tensordot(matrix[:3, :3], np.stack([i, j, k]).astype(float), axes=1) + matrix[:3, 3, None, None, None]
    inside = np.ones(fullLabels.shape, bool)
    for axis in range(3):
        inside &= (ras[axis] >= bounds[2 * axis] - 1e-6) & (ras[axis] <= bounds[2 * axis + 1] + 1e-6)
    kk, jj, ii = np.nonzero(inside)
    assert extent == ((ii.min(), ii.max() + 1), (jj.min(), jj.max() + 1), (kk.min(), kk.max() + 1))
    assert extent != sceneio.fullExtent(volume)

    # the cropped input written for the engine: same voxels, same physical positions (read back with SimpleITK)
    cropPath = tmp_path / "crop.nrrd"
    sceneio.writeVolumeForEngine(volume, cropPath, extent)
    crop = sitk.ReadImage(str(cropPath))
    full = sitk.ReadImage(str(inputPath))
    (i0, i1), (j0, j1), (k0, k1) = extent
    np.testing.assert_array_equal(sitk.GetArrayFromImage(crop), sitk.GetArrayFromImage(full)[k0:k1, j0:j1, i0:i1])
    np.testing.assert_allclose(
        crop.TransformIndexToPhysicalPoint((0, 0, 0)), full.TransformIndexToPhysicalPoint((i0, j0, k0)), atol=1e-6
    )

    # engine outputs on the crop's geometry are pasted back where they came from, zero elsewhere
    cropLabels = fullLabels[k0:k1, j0:j1, i0:i1].copy()
    cropSd = syntheticSd(cropLabels.shape, seed=3)
    result = writeEngineOutputs(tmp_path / "out", cropPath, cropLabels, cropSd)
    imported = sceneio.importResults(scene, volume, result, extent=extent)
    exported = sceneio.exportLabelValues(imported.segmentationNode, volume)
    expected = np.zeros_like(fullLabels)
    expected[k0:k1, j0:j1, i0:i1] = cropLabels
    np.testing.assert_array_equal(exported, expected)
    sdFull = sceneio.arrayFromImage(imported.uncertaintyVolumeNode)
    assert sdFull.shape == fullLabels.shape
    np.testing.assert_array_equal(sdFull[k0:k1, j0:j1, i0:i1], cropSd)
    assert sdFull.sum() == pytest.approx(float(cropSd.sum()), rel=1e-6)


def test_misplaced_result_is_refused_and_scene_untouched(scene, samples, tmp_path):
    inputPath = samples / PROSTATE
    volume = loadVolume(scene, inputPath, name="prostate")
    labels = sitkArray(samples / PROSTATE_LABEL).astype(np.int16)
    result = writeEngineOutputs(tmp_path / "out", inputPath, labels, syntheticSd(labels.shape))
    shifted = sitk.ReadImage(result["files"]["labels"])
    shifted.SetOrigin([o + 1.0 for o in shifted.GetOrigin()])
    sitk.WriteImage(shifted, result["files"]["labels"])
    before = nodeCount(scene)
    with pytest.raises(sceneio.GeometryMismatchError):
        sceneio.importResults(scene, volume, result)
    assert nodeCount(scene) == before


def linearTransform(scene, name, degrees=20.0, axis=(0.3, 1.0, 0.2), shift=(15.0, -8.0, 4.0)):
    rotation = sitk.VersorTransform(tuple(float(a) for a in axis), np.deg2rad(degrees))
    matrix = np.eye(4)
    matrix[:3, :3] = np.array(rotation.GetMatrix()).reshape(3, 3)
    matrix[:3, 3] = shift
    node = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", name)
    m = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            m.SetElement(r, c, matrix[r, c])
    node.SetMatrixTransformToParent(m)
    return node, matrix


def test_roi_crop_and_results_follow_parent_transforms(scene, samples, tmp_path):
    """Volume and ROI each under a linear transform: the crop is where the ROI is in the world,
    and the results go under the volume's transform, so they overlay it."""
    inputPath = samples / PROSTATE
    volume = loadVolume(scene, inputPath, name="prostate")
    volumeTransform, volumeMatrix = linearTransform(scene, "volume transform")
    volume.SetAndObserveTransformNodeID(volumeTransform.GetID())
    roiTransform, roiMatrix = linearTransform(scene, "roi transform", degrees=0.0, shift=(3.0, 2.0, -1.0))
    roi = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "roi")
    roi.SetAndObserveTransformNodeID(roiTransform.GetID())
    worldCentre = volumeMatrix @ sceneio.ijkToRasArray(volume) @ np.array([40.0, 30.0, 6.0, 1.0])
    roi.SetCenter(*(np.linalg.inv(roiMatrix) @ worldCentre)[:3])  # ROI's own coordinates
    roi.SetSize(14.0, 11.0, 12.0)
    extent = sceneio.roiExtent(volume, roi)

    # the same, hardened by hand: a volume whose grid already is in world, an ROI at its world centre
    hardened = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "hardened")
    sceneio.setIjkToRasArray(hardened, volumeMatrix @ sceneio.ijkToRasArray(volume))
    hardened.SetAndObserveImageData(volume.GetImageData())
    worldRoi = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "world roi")
    worldRoi.SetCenter(*worldCentre[:3])
    worldRoi.SetSize(14.0, 11.0, 12.0)
    assert extent == sceneio.roiExtent(hardened, worldRoi)
    (i0, i1), (j0, j1), (k0, k1) = extent
    assert i0 <= 40 < i1 and j0 <= 30 < j1 and k0 <= 6 < k1 and extent != sceneio.fullExtent(volume)
    # without the transforms the crop would be elsewhere
    volume.SetAndObserveTransformNodeID(None)
    assert sceneio.roiExtent(volume, roi) != extent
    volume.SetAndObserveTransformNodeID(volumeTransform.GetID())

    labels = sitkArray(samples / PROSTATE_LABEL).astype(np.int16)
    result = writeEngineOutputs(tmp_path / "out", inputPath, labels, syntheticSd(labels.shape))
    imported = sceneio.importResults(scene, volume, result)
    for node in (imported.segmentationNode, imported.uncertaintyVolumeNode):
        assert node.GetTransformNodeID() == volumeTransform.GetID()
    # uncertain regions are reported in world coordinates (where "go to" must move the slices)
    from LDSegLib import review

    region = review.uncertainRegions(imported.uncertaintyVolumeNode, 0.1)[0]
    expected = volumeMatrix @ sceneio.ijkToRasArray(volume) @ np.array([*region.centroidIjk, 1.0])
    np.testing.assert_allclose(region.centroidRas, expected[:3], atol=1e-6)


def test_non_linear_transform_is_refused_clearly(scene, samples, tmp_path):
    inputPath = samples / PROSTATE
    volume = loadVolume(scene, inputPath, name="prostate")
    grid = scene.AddNewNodeByClass("vtkMRMLGridTransformNode", "warp")
    volume.SetAndObserveTransformNodeID(grid.GetID())
    roi = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "roi")
    with pytest.raises(ValueError, match="non-linear transform 'warp'.*Harden"):
        sceneio.roiExtent(volume, roi)
    labels = sitkArray(samples / PROSTATE_LABEL).astype(np.int16)
    result = writeEngineOutputs(tmp_path / "out", inputPath, labels, syntheticSd(labels.shape))
    before = nodeCount(scene)
    with pytest.raises(ValueError, match="non-linear"):
        sceneio.importResults(scene, volume, result)
    assert nodeCount(scene) == before


def test_segments_carry_standard_terminology(scene, samples, tmp_path):
    inputPath = samples / PROSTATE
    volume = loadVolume(scene, inputPath, name="prostate")
    labels = sitkArray(samples / PROSTATE_LABEL).astype(np.int16)
    result = writeEngineOutputs(tmp_path / "out", inputPath, labels, syntheticSd(labels.shape))
    prostate = {
        "category": ["SCT", "123037004", "Anatomical Structure"],
        "type": ["SCT", "41216001", "Prostate"],
    }
    result["classes"][1]["terminology"] = prostate  # from the result's classes (the engine's config) ...
    lesion = {
        "category": ["SCT", "49755003", "Morphologically Altered Structure"],
        "type": ["SCT", "52988006", "Lesion"],
    }
    imported = sceneio.importResults(scene, volume, result, terminology={"lesion": lesion})  # ... or given
    segmentation = imported.segmentationNode.GetSegmentation()
    terminologyLogic = slicer.vtkSlicerTerminologiesModuleLogic()
    tag = slicer.vtkSegment.GetTerminologyEntryTagName()
    for name, code in (("gland", prostate), ("lesion", lesion)):
        segment = segmentation.GetSegment(segmentation.GetSegmentIdBySegmentName(name))
        value = vtk.reference("")
        assert segment.GetTag(tag, value)
        text = str(value)
        entry = slicer.vtkSlicerTerminologyEntry()
        assert terminologyLogic.DeserializeTerminologyEntry(text, entry), text
        assert entry.GetTypeObject().GetCodeValue() == code["type"][1]
        assert entry.GetCategoryObject().GetCodeMeaning() == code["category"][2]
    other = segmentation.GetSegment(segmentation.GetSegmentIdBySegmentName("urethra"))
    value = vtk.reference("")
    other.GetTag(tag, value)  # no terminology declared: Slicer's default stays, none invented
    assert "41216001" not in str(value) and "52988006" not in str(value)


def test_left_handed_volume_results_on_its_own_voxels(scene, tmp_path):
    """A volume made in code with a flipped axis (left-handed IJK-to-RAS): Slicer's reader returns
    the engine's files with that axis reversed; the results must still land on the node's voxels."""
    k, j, i = np.indices((6, 20, 18))
    labels = ((i > 9) + 2 * (k > 3)).astype(np.int16)  # not symmetric in any axis
    volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "flipped")
    matrix = np.diag([-0.9, 0.9, 2.5, 1.0])
    matrix[:3, 3] = (20.0, -10.0, 5.0)
    sceneio.setIjkToRasArray(volume, matrix)
    volume.SetAndObserveImageData(sceneio.imageFromArray(labels.astype(np.float32)))
    inputPath = tmp_path / "input.nrrd"
    sceneio.writeVolumeForEngine(volume, inputPath)
    reread, rereadMatrix = sceneio.readVolumeFile(inputPath)
    assert not np.allclose(rereadMatrix, matrix)  # the reader did reverse an axis
    classes = [
        {"index": 0, "name": "background", "label_value": 0},
        {"index": 1, "name": "a", "label_value": 1},
        {"index": 2, "name": "b", "label_value": 2},
        {"index": 3, "name": "c", "label_value": 3},
    ]
    engineLabels = sitk.GetArrayFromImage(sitk.ReadImage(str(inputPath))).astype(np.int16)  # as the engine sees it
    np.testing.assert_array_equal(engineLabels, labels)
    result = writeEngineOutputs(tmp_path / "out", inputPath, engineLabels, syntheticSd(labels.shape), classes=classes)
    imported = sceneio.importResults(scene, volume, result)
    np.testing.assert_array_equal(sceneio.exportLabelValues(imported.segmentationNode, volume), labels)
    np.testing.assert_array_equal(imported.labels, labels)
