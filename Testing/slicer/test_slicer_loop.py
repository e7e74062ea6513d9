"""The review -> correct -> fine-tune loop end to end, on real MRML with real engine runs.

Segment a volume with a tiny model -> edit a segment's voxels (as Segment Editor does: the
segment's binary labelmap replaced) -> add the case -> fine-tune (time budget) -> the new model
is listed and selectable -> it segments the case again, and the module says what changed.
About 30 s on 2 CPU cores after the session's tiny model exists.
"""

import json
import os
import shutil
import sys

import numpy as np
import vtk
from slicertesting import HIPPOCAMPUS, loadVolume, slicer

from LDSegLib import cases, review, sceneio, segment
from LDSegLib.logic import ModuleLogic


def replaceSegmentVoxels(scene, segmentationNode, segmentId, volume, mask):
    """Set a segment to ``mask`` ([k, j, i] on the volume's grid), the way an editor effect does."""
    labelmap = slicer.vtkMRMLLabelMapVolumeNode()
    sceneio.setIjkToRasArray(labelmap, sceneio.ijkToRasArray(volume))
    labelmap.SetAndObserveImageData(sceneio.imageFromArray(mask.astype(np.uint8)))
    scene.AddNode(labelmap)
    try:
        ids = vtk.vtkStringArray()
        ids.InsertNextValue(segmentId)
        assert slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(
            labelmap, segmentationNode, ids
        )
    finally:
        scene.RemoveNode(labelmap)


def test_segment_correct_add_finetune_resegment(scene, engineEnv, tinyModel, monkeypatch):
    monkeypatch.setenv("LDSEG_HOME", engineEnv["LDSEG_HOME"])  # the in-process model list reads it
    userDir = segment.userModelDir(engineEnv)
    os.makedirs(userDir, exist_ok=True)
    mine = os.path.join(userDir, "tiny-loop.safetensors")
    shutil.copyfile(tinyModel.path, mine)
    logic = ModuleLogic(scene, python=sys.executable, env=engineEnv)
    model = logic.modelByPath(mine) if logic.refreshModels() else None
    assert model is not None and model.source == "user" and not model.error

    # 1. segment
    volume = loadVolume(scene, HIPPOCAMPUS / "images" / "hippocampus_008.nii.gz", name="case8")
    settings = segment.SegmentSettings(model=model.path, samples=2, seed=0)
    job = logic.segmentationJob(volume, settings, model)
    job.start()
    job.wait(timeout=120)
    assert job.succeeded, job.error
    logic.segmentationDone(job)
    segmentationNode = job.result.segmentationNode
    engineLabels = sceneio.exportLabelValues(segmentationNode, volume)

    # 2. correct: in a block, the first class's voxels become background and background becomes the class
    first = model.foregroundClasses[0]
    segmentation = segmentationNode.GetSegmentation()
    firstId = segmentation.GetSegmentIdBySegmentName(first["name"])
    mask = review.segmentMask(segmentationNode, firstId, volume)
    block = np.zeros_like(mask)
    block[8:20, 16:32, 10:24] = True
    block &= (engineLabels == 0) | (engineLabels == int(first["label_value"]))  # no other class touched
    assert block.sum() > 100
    replaceSegmentVoxels(scene, segmentationNode, firstId, volume, mask ^ block)
    corrected = sceneio.exportLabelValues(segmentationNode, volume)
    assert int((corrected != engineLabels).sum()) == int(block.sum())

    # 3. add the case: files in the user's model folder, with where they came from
    source = logic.addCorrectedCase(segmentationNode, model)
    folder, names = logic.correctedCases(model)
    assert names == [source["case"]] and folder.startswith(userDir)
    assert source["corrected_voxels"] == int(block.sum()) and source["volume"] == "case8"
    assert source["segmented_by"] and source["model"] == model.name
    assert json.load(open(os.path.join(folder, "sources", source["case"] + ".json")))["case"] == source["case"]
    written, _ = sceneio.readVolumeFile(os.path.join(folder, "labels", source["case"] + ".nrrd"))
    np.testing.assert_array_equal(written, corrected)

    # 4. fine-tune on it (one case: no validation split), with a time budget
    training = logic.trainingJob(model, epochs=2, learningRate=1e-4, device="cpu", timeBudget=1)
    training.start()
    assert training.cases == 1
    assert training.process.args[-2:] == ["--time-budget", "1"]
    training.wait(timeout=240)
    assert training.succeeded, training.error + "\n" + "\n".join(training.log[-10:])
    newModel = logic.trainingDone(training)
    assert newModel is not None and newModel.source == "user" and newModel.path == training.result
    assert newModel in logic.models and newModel.training["fine_tuned_from"] == os.path.basename(mine)
    assert cases.taskName(newModel) == cases.taskName(model)  # later corrections join the same cases

    # 5. the new model segments the corrected case again; what changed is reported
    again = logic.resegmentationJob(newModel, settings)
    again.start()
    again.wait(timeout=120)
    assert again.succeeded, again.error
    text = logic.describeResegmentation(again)
    assert "The new model changed" in text and "Dice of the new model to your correction" in text
    assert "Dice of the old model to your correction" in text
    newLabels = sceneio.exportLabelValues(again.result.segmentationNode, volume)
    assert newLabels.shape == corrected.shape
