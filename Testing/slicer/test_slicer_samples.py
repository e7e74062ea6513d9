"""The spread of a result in the scene: its samples as a sequence one can step through, and the
per-voxel class frequency, on slicer-core's real MRML (with Slicer's own sequences logic)."""

import sys

import numpy as np
import pytest
import SimpleITK as sitk
from render_slice_view import blendImage
from slicertesting import HIPPOCAMPUS, REPO, loadVolume, syntheticSd, writeEngineOutputs
from slicescene import sliceLogic

from LDSegLib import logic, sceneio, segment
from LDSegLib import samples as sampleLogic

SHIPPED = REPO / "Resources" / "Models" / "hippocampus.safetensors"


def prostateSamples(labels, count=3):
    """``count`` different label maps around the prostate labels: each shifted along i by its number."""
    return np.stack([np.roll(labels, n, axis=2) for n in range(count)])


@pytest.fixture
def withSamples(scene, samples_dir, tmp_path):
    inputPath = samples_dir / "prostate_phantom_subvolume.nrrd"
    volume = loadVolume(scene, inputPath, name="prostate")
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(samples_dir / "prostate_phantom_subvolume-label.nrrd")))
    labels = labels.astype(np.int16)
    stack = prostateSamples(labels)
    result = writeEngineOutputs(tmp_path / "out", inputPath, labels, syntheticSd(labels.shape), samples=stack)
    return volume, stack, sceneio.importResults(scene, volume, result)


@pytest.fixture
def samples_dir(samples):
    return samples


def test_samples_load_as_a_sequence_with_clear_names(scene, withSamples):
    volume, stack, imported = withSamples
    segmentation = imported.segmentationNode
    assert sampleLogic.sampleBrowser(segmentation) is imported.sampleBrowserNode is not None
    assert sampleLogic.sampleCount(segmentation) == 3
    sequence = imported.sampleBrowserNode.GetMasterSequenceNode()
    assert sequence.GetName() == "prostate LDSeg samples" and sequence.GetIndexName() == "sample"
    assert [sequence.GetNthIndexValue(n) for n in range(3)] == ["1", "2", "3"]
    for n in range(3):  # every sample on the input's grid, voxel for voxel
        np.testing.assert_array_equal(sceneio.arrayFromImage(sequence.GetNthDataNode(n)), stack[n])
    proxy = sampleLogic.sampleProxy(segmentation)
    assert proxy.GetName() == "prostate LDSeg sample" and proxy.IsA("vtkMRMLLabelMapVolumeNode")
    assert proxy.GetDisplayNode().GetColorNodeID() == imported.colorTableNode.GetID()
    np.testing.assert_allclose(sceneio.ijkToRasArray(proxy), sceneio.ijkToRasArray(volume))
    assert sceneio.subjectHierarchyParent(scene, proxy) is volume
    assert [c["name"] for c in sampleLogic.sampleClasses(segmentation)] == [
        "gland",
        "peripheral zone",
        "transition zone",
        "lesion",
        "urethra",
    ]
    # the module never offers its own result volumes as the input of a new run
    assert logic.ModuleLogic(scene).defaultInputVolume() is volume


def test_stepping_changes_the_shown_sample_and_the_slice_view(scene, withSamples):
    volume, stack, imported = withSamples
    segmentation = imported.segmentationNode
    red = sliceLogic(scene, "Red")
    red.GetSliceNode().SetDimensions(160, 160, 1)
    red.GetSliceCompositeNode().SetBackgroundVolumeID(volume.GetID())
    red.FitSliceToAll()
    centre = (sceneio.ijkToRasArray(volume) @ np.array([*np.array(stack.shape[:0:-1]) / 2.0, 1.0]))[:3]
    red.GetSliceNode().JumpSliceByOffsetting(*centre)
    pictures = []
    for number in (1, 2, 3, 1):
        proxy = sampleLogic.showSample(segmentation, number)
        assert sampleLogic.shownSample(segmentation) == number
        np.testing.assert_array_equal(sceneio.arrayFromImage(proxy), stack[number - 1])
        pictures.append(blendImage(red).astype(int))
    for composite in sceneio.sliceCompositeNodes(scene):
        assert composite.GetLabelVolumeID() == proxy.GetID()
    assert all(n.GetUseLabelOutline() for n in sceneio.sliceNodes(scene))  # outlines over the segments
    assert np.abs(pictures[0] - pictures[1]).sum() > 0 and np.abs(pictures[1] - pictures[2]).sum() > 0
    np.testing.assert_array_equal(pictures[0], pictures[3])  # back to sample 1: the same picture
    with pytest.raises(ValueError, match="samples 1 to 3"):
        sampleLogic.showSample(segmentation, 4)
    sampleLogic.hideSample(segmentation)
    assert all(not c.GetLabelVolumeID() for c in sceneio.sliceCompositeNodes(scene))
    assert not any(n.GetUseLabelOutline() for n in sceneio.sliceNodes(scene))  # as before


def test_class_frequency_is_the_mean_vote_over_the_samples(scene, withSamples):
    volume, stack, imported = withSamples
    segmentation = imported.segmentationNode
    first = sampleLogic.showFrequency(segmentation, 1, opacity=0.5)
    np.testing.assert_allclose(sceneio.arrayFromImage(first), (stack == 1).mean(axis=0), atol=1e-6)
    assert first.GetName() == "prostate LDSeg gland frequency"
    votes = sceneio.arrayFromImage(first) * 3  # whole votes out of 3 samples
    np.testing.assert_allclose(votes, np.round(votes), atol=1e-5)
    for composite in sceneio.sliceCompositeNodes(scene):
        assert composite.GetForegroundVolumeID() == first.GetID() and composite.GetForegroundOpacity() == 0.5
    display = first.GetDisplayNode()
    assert display.GetApplyThreshold() and display.GetLowerThreshold() == pytest.approx(0.5 / 3)
    # another class: the same node, refilled and renamed
    second = sampleLogic.showFrequency(segmentation, 9)
    assert second is first and second.GetName() == "prostate LDSeg lesion frequency"
    np.testing.assert_allclose(sceneio.arrayFromImage(second), (stack == 9).mean(axis=0), atol=1e-6)
    with pytest.raises(ValueError, match="no class with label value 3"):
        sampleLogic.showFrequency(segmentation, 3)
    sampleLogic.hideFrequency(segmentation)
    for composite in sceneio.sliceCompositeNodes(scene):
        assert composite.GetForegroundVolumeID() == imported.uncertaintyVolumeNode.GetID()
    assert logic.ModuleLogic(scene).defaultInputVolume() is volume


def test_the_panel_logic_shows_one_result_at_a_time(scene, withSamples, samples_dir, tmp_path):
    volume, stack, imported = withSamples
    moduleLogic = logic.ModuleLogic(scene)
    text = moduleLogic.updateSamplesView(imported.segmentationNode, True, 2, True, 7, 0.6)
    assert (
        text
        == "Showing sample 2 of 3 as outlines and how often each voxel is 'peripheral zone' (0 to 1 over 3 samples)."
    )
    proxy, frequency = (
        sampleLogic.sampleProxy(imported.segmentationNode),
        sampleLogic.frequencyVolume(imported.segmentationNode),
    )
    # a new run without samples: the old result's sample and frequency leave the views
    inputPath = samples_dir / "prostate_phantom_subvolume.nrrd"
    result = writeEngineOutputs(tmp_path / "plain", inputPath, stack[0], syntheticSd(stack[0].shape))
    plain = sceneio.importResults(scene, volume, result)
    assert plain.sampleBrowserNode is None and moduleLogic.sampleCount(plain.segmentationNode) == 0
    text = moduleLogic.updateSamplesView(plain.segmentationNode, True, 2, True, 7, 0.6)
    assert "No individual samples" in text and "Keep individual samples" in text
    for composite in sceneio.sliceCompositeNodes(scene):
        assert composite.GetLabelVolumeID() != proxy.GetID()
        assert composite.GetForegroundVolumeID() == plain.uncertaintyVolumeNode.GetID() != frequency.GetID()
    with pytest.raises(ValueError, match="has no individual samples"):
        sampleLogic.showSample(plain.segmentationNode, 1)
    # the user deleted the samples (Data module): the result counts as one without samples, no error
    scene.RemoveNode(imported.sampleBrowserNode.GetMasterSequenceNode())
    assert moduleLogic.sampleCount(imported.segmentationNode) == 0
    assert "No individual samples" in moduleLogic.updateSamplesView(
        imported.segmentationNode, True, 1, False, None, 0.6
    )


def test_a_samples_file_that_does_not_match_is_refused_before_the_scene_changes(scene, samples_dir, tmp_path):
    inputPath = samples_dir / "prostate_phantom_subvolume.nrrd"
    volume = loadVolume(scene, inputPath, name="prostate")
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(samples_dir / "prostate_phantom_subvolume-label.nrrd")))
    stack = prostateSamples(labels.astype(np.int16))
    result = writeEngineOutputs(
        tmp_path / "out", inputPath, labels.astype(np.int16), syntheticSd(labels.shape), samples=stack
    )
    nodes = scene.GetNumberOfNodes()
    with pytest.raises(ValueError, match="holds 3 samples; the result says 5"):
        sceneio.importResults(scene, volume, {**result, "samples": 5})
    bad = stack.copy()
    bad[0, 0, 0, 0] = 3  # not a label value of the model
    result = writeEngineOutputs(
        tmp_path / "bad", inputPath, labels.astype(np.int16), syntheticSd(labels.shape), samples=bad
    )
    with pytest.raises(ValueError, match=r"values \[3\]"):
        sceneio.importResults(scene, volume, result)
    assert scene.GetNumberOfNodes() == nodes


def test_keep_samples_is_one_engine_flag():
    plain = segment.SegmentSettings().engineArguments("in.nrrd", "out")
    assert "--save-samples" not in plain
    kept = segment.SegmentSettings(saveSamples=True).engineArguments("in.nrrd", "out")
    assert kept[: len(plain)] == plain and kept[len(plain) :] == ["--save-samples"]


def test_real_run_of_the_shipped_model_keeps_its_samples(scene, engineEnv):
    image = HIPPOCAMPUS / "images" / "hippocampus_001.nii.gz"
    if not image.is_file():
        pytest.skip(f"hippocampus data not found at {image}")
    volume = loadVolume(scene, image, name="hippocampus")
    settings = segment.SegmentSettings(model=str(SHIPPED), device="cpu", samples=3, seed=3, saveSamples=True)
    job = segment.SegmentationJob(scene, volume, settings, python=sys.executable, env=engineEnv, keepWorkDir=True)
    job.start()
    job.wait(timeout=500)
    try:
        assert job.succeeded, job.error
        engineSamples = sitk.GetArrayFromImage(sitk.ReadImage(job.resultJson["files"]["samples"]))
        assert engineSamples.shape == (*sceneio.volumeShape(volume), 3)
        segmentation = job.result.segmentationNode
        assert sampleLogic.sampleCount(segmentation) == 3
        for number in (1, 2, 3):  # each sample as the engine wrote it, on the input volume's grid
            proxy = sampleLogic.showSample(segmentation, number)
            np.testing.assert_array_equal(sceneio.arrayFromImage(proxy), engineSamples[..., number - 1])
        assert any((engineSamples[..., 0] != engineSamples[..., n]).any() for n in (1, 2))  # a real spread
        labels = sceneio.exportLabelValues(segmentation, volume)
        for c in sampleLogic.sampleClasses(segmentation):
            frequency = sceneio.arrayFromImage(sampleLogic.showFrequency(segmentation, c["label_value"]))
            np.testing.assert_allclose(frequency, (engineSamples == c["label_value"]).mean(axis=-1), atol=1e-6)
            # the segments are where the class wins: almost everywhere at least as often as any other class
            assert (frequency[labels == c["label_value"]] >= 1 / 3 - 1e-6).mean() > 0.99
    finally:
        job.keepWorkDir = False
        job._cleanup()
