"""Review tools against numbers computed directly from the arrays."""

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage
from slicertesting import PROSTATE_CLASSES, loadVolume, syntheticSd, writeEngineOutputs

from LDSegLib import review, sceneio

THRESHOLD = 0.15


@pytest.fixture
def imported(scene, samples, tmp_path):
    inputPath = samples / "prostate_phantom_subvolume.nrrd"
    volume = loadVolume(scene, inputPath, name="prostate")
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(samples / "prostate_phantom_subvolume-label.nrrd"))).astype(
        np.int16
    )
    sd = syntheticSd(labels.shape, seed=7)
    result = writeEngineOutputs(tmp_path / "out", inputPath, labels, sd)
    return volume, labels, sd, sceneio.importResults(scene, volume, result, sdThreshold=THRESHOLD)


def test_segment_statistics_equal_direct_computation(imported):
    volume, labels, sd, result = imported
    rows = review.segmentStatistics(result.segmentationNode, result.uncertaintyVolumeNode, THRESHOLD)
    voxelMl = 0.5 * 0.5 * 3.0 / 1000.0
    foreground = [c for c in PROSTATE_CLASSES if c["label_value"] != 0]
    assert [r.name for r in rows] == [c["name"] for c in foreground]
    for row, c in zip(rows, foreground):
        mask = labels == c["label_value"]
        values = sd[mask].astype(np.float64)
        assert row.voxels == mask.sum()
        assert row.volumeMl == pytest.approx(mask.sum() * voxelMl, rel=1e-9)
        if mask.any():
            assert row.meanSd == pytest.approx(values.mean(), rel=1e-6)
            assert row.maxSd == pytest.approx(values.max(), rel=1e-6)
            assert row.fractionAboveThreshold == pytest.approx((values > THRESHOLD).mean(), rel=1e-9)
        else:  # the absent class
            assert (row.volumeMl, row.meanSd, row.maxSd, row.fractionAboveThreshold) == (0.0, 0.0, 0.0, 0.0)
    assert rows[0].row()[0] == "gland" and rows[0].row()[1] == f"{rows[0].volumeMl:.3f}"


def test_statistics_follow_user_edits(imported):
    """The table reflects the segmentation as edited, not the engine's file."""
    volume, labels, sd, result = imported
    segmentation = result.segmentationNode.GetSegmentation()
    lesionId = segmentation.GetSegmentIdBySegmentName("lesion")
    segmentation.RemoveSegment(lesionId)
    rows = review.segmentStatistics(result.segmentationNode, result.uncertaintyVolumeNode, THRESHOLD)
    assert "lesion" not in [r.name for r in rows]
    assert len(rows) == 4


def test_uncertain_regions_ranked_and_navigated(scene, imported):
    volume, labels, sd, result = imported
    regions = review.uncertainRegions(result.uncertaintyVolumeNode, THRESHOLD)

    # direct: 26-connected components of SD > threshold, ranked by summed SD
    components, count = ndimage.label(sd > THRESHOLD, structure=np.ones((3, 3, 3)))
    sums = ndimage.sum(sd.astype(np.float64), components, index=range(1, count + 1))
    sizes = ndimage.sum(np.ones_like(sd), components, index=range(1, count + 1))
    order = np.argsort(-sums)
    assert len(regions) == count >= 1
    np.testing.assert_allclose([r.sumSd for r in regions], sums[order], rtol=1e-6)
    np.testing.assert_array_equal([r.voxels for r in regions], sizes[order])
    top = regions[0]
    topMask = components == order[0] + 1
    assert top.maxSd == pytest.approx(float(sd[topMask].max()), rel=1e-6)
    pk, pj, pi = np.unravel_index(np.argmax(np.where(topMask, sd, -1)), sd.shape)
    assert top.peakIjk == (pi, pj, pk)
    matrix = sceneio.ijkToRasArray(volume)
    np.testing.assert_allclose(top.peakRas, (matrix @ [pi, pj, pk, 1.0])[:3], atol=1e-9)
    kk, jj, ii = np.nonzero(topMask)
    np.testing.assert_allclose(top.centroidIjk, (ii.mean(), jj.mean(), kk.mean()), atol=1e-9)

    # next / previous move every slice view to the region (wrapping around)
    navigator = review.UncertainRegionNavigator(regions)
    first = navigator.next()
    review.jumpSlicesTo(scene, first.centroidRas)
    for sliceNode in sceneio.sliceNodes(scene):
        sliceToRas = sliceNode.GetSliceToRAS()
        centre = [sliceToRas.GetElement(r, 3) for r in range(3)]
        np.testing.assert_allclose(centre, first.centroidRas, atol=1e-6)
    assert navigator.previous() is regions[-1]
    assert navigator.next() is first
    assert "Region 1 of" in navigator.describe()


def test_uncertain_segment_is_thresholded_sd(imported):
    volume, labels, sd, result = imported
    segmentationNode = result.segmentationNode
    segmentation = segmentationNode.GetSegmentation()
    segmentId = review.createUncertainSegment(segmentationNode, result.uncertaintyVolumeNode, THRESHOLD)
    segment = segmentation.GetSegment(segmentId)
    assert segment.GetName() == "uncertain"
    mask = review.segmentMask(segmentationNode, segmentId, volume)
    np.testing.assert_array_equal(mask, sd > THRESHOLD)

    # a new threshold replaces it; class segments keep their voxels (editable in Segment Editor)
    n = segmentation.GetNumberOfSegments()
    segmentId = review.createUncertainSegment(segmentationNode, result.uncertaintyVolumeNode, 0.3)
    assert segmentation.GetNumberOfSegments() == n
    np.testing.assert_array_equal(review.segmentMask(segmentationNode, segmentId, volume), sd > 0.3)
    classIds = [
        segmentation.GetNthSegmentID(i)
        for i in range(segmentation.GetNumberOfSegments())
        if segmentation.GetNthSegmentID(i) != segmentId
    ]
    np.testing.assert_array_equal(sceneio.exportLabelValues(segmentationNode, volume, segmentIds=classIds), labels)
    # the uncertain segment is not a class: the review table leaves it out
    rows = review.segmentStatistics(segmentationNode, result.uncertaintyVolumeNode, THRESHOLD)
    assert "uncertain" not in [r.name for r in rows]


def test_many_uncertain_regions_in_one_pass(scene):
    """8.4 M voxels with 32,768 separate uncertain spots: one labeling pass, not one scan per region
    (the old loop took about 2.4 ms per region here: over a minute)."""
    import time

    shape = (128, 256, 256)
    sd = np.zeros(shape, np.float32)
    rng = np.random.default_rng(3)
    spots = sd[::4, ::8, ::8]
    spots[...] = rng.uniform(0.2, 0.5, spots.shape).astype(np.float32)
    volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "sd")
    sceneio.setIjkToRasArray(volume, np.diag([0.8, 0.8, 1.5, 1.0]))
    volume.SetAndObserveImageData(sceneio.imageFromArray(sd))
    start = time.monotonic()
    regions = review.uncertainRegions(volume, 0.1, maxRegions=100)
    seconds = time.monotonic() - start
    assert seconds < 10.0, f"{seconds:.1f} s for {spots.size} regions"
    assert len(regions) == 100
    top = np.sort(spots.ravel())[::-1][:100]
    np.testing.assert_allclose([r.maxSd for r in regions], top, rtol=1e-6)  # singletons: sum = max = value
    k, j, i = np.unravel_index(np.argmax(sd), shape)
    assert regions[0].peakIjk == (i, j, k) and regions[0].voxels == 1
    np.testing.assert_allclose(regions[0].peakRas, (0.8 * i, 0.8 * j, 1.5 * k), atol=1e-9)
