"""The engine runner against the real ``ldseg`` engine: runs, progress, cancel, failure, fine-tuning.

A tiny model is trained once per session with ``ldseg train`` (about 15 s on 2 CPU cores)
on three hippocampus cases; every run here is a real engine process.
"""

import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from slicertesting import HIPPOCAMPUS, loadVolume, slicer

from LDSegLib import runner, sceneio, segment, training
from LDSegLib.runner import RunState


def stageOrder(events, stages):
    return [stages.index(e.stage) for e in events if e.stage in stages]


def test_real_segmentation_run(scene, samples, engineEnv, tinyModel):
    volume = loadVolume(scene, samples / "prostate_phantom_subvolume.nrrd", name="prostate")
    settings = segment.SegmentSettings(
        model=tinyModel.path, device="auto", samples=3, seed=1, probabilities=True, sdThreshold=0.05
    )
    job = segment.SegmentationJob(scene, volume, settings, python=sys.executable, env=engineEnv, keepWorkDir=True)
    job.start()
    assert job.state == RunState.RUNNING and job.process.pid
    states = {job.state}
    while not job.finished:
        job.poll()
        states.add(job.state)
        time.sleep(0.02)
    try:
        assert job.state == RunState.IDLE and job.succeeded, job.error
        # progress: parsed in the engine's order, fractions never going back, ending at done = 1
        order = stageOrder(job.events, runner.SEGMENT_STAGES)
        assert order == sorted(order) and order[0] == 0 and order[-1] == runner.SEGMENT_STAGES.index("done")
        fractions = [e.fraction for e in job.events if e.stage in runner.SEGMENT_STAGES]
        assert fractions == sorted(fractions) and fractions[-1] == 1.0 and job.fraction == 1.0
        assert {"sample", "write"} <= {e.stage for e in job.events}
        # the device actually used is reported (this machine: CPU, with the warning)
        assert job.deviceUsed == job.resultJson["device"]
        if job.deviceUsed.startswith("cpu"):
            assert job.onCpu and "CPU" in job.deviceMessage.upper()

        imported = job.result
        segmentation = imported.segmentationNode.GetSegmentation()
        foreground = [c for c in tinyModel.classes if c["label_value"] != 0]
        assert [segmentation.GetNthSegment(n).GetName() for n in range(segmentation.GetNumberOfSegments())] == [
            c["name"] for c in foreground
        ]
        # exported labelmap == the engine's own output file, voxel for voxel, on the input's geometry
        engineLabels = sitk.GetArrayFromImage(sitk.ReadImage(job.resultJson["files"]["labels"]))
        np.testing.assert_array_equal(sceneio.exportLabelValues(imported.segmentationNode, volume), engineLabels)
        engineSd = sitk.GetArrayFromImage(sitk.ReadImage(job.resultJson["files"]["sd"]))
        np.testing.assert_array_equal(sceneio.arrayFromImage(imported.uncertaintyVolumeNode), engineSd)
        assert engineSd.max() > 0  # 3 samples: a real spread
        assert imported.probabilityVolumeNode is not None
        assert sceneio.subjectHierarchyParent(scene, imported.segmentationNode) is volume
    finally:
        job.keepWorkDir = False
        job._cleanup()
    assert not os.path.exists(job.workDir)


def test_real_roi_run_pasted_back(scene, samples, engineEnv, tinyModel):
    volume = loadVolume(scene, samples / "prostate_phantom_subvolume.nrrd", name="prostate")
    roi = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "roi")
    centre = (sceneio.ijkToRasArray(volume) @ np.array([30.0, 40.0, 6.0, 1.0]))[:3]
    roi.SetCenter(*centre)
    roi.SetSize(15.0, 12.0, 14.0)
    settings = segment.SegmentSettings(model=tinyModel.path, samples=2, seed=2)
    job = segment.SegmentationJob(
        scene, volume, settings, roiNode=roi, python=sys.executable, env=engineEnv, keepWorkDir=True
    )
    job.start()
    job.wait(timeout=240)
    try:
        assert job.succeeded, job.error
        (i0, i1), (j0, j1), (k0, k1) = job.extent
        assert job.extent != sceneio.fullExtent(volume)
        engineLabels = sitk.GetArrayFromImage(sitk.ReadImage(job.resultJson["files"]["labels"]))
        assert engineLabels.shape == (k1 - k0, j1 - j0, i1 - i0)
        full = sceneio.exportLabelValues(job.result.segmentationNode, volume)
        np.testing.assert_array_equal(full[k0:k1, j0:j1, i0:i1], engineLabels)
        outside = np.ones(full.shape, bool)
        outside[k0:k1, j0:j1, i0:i1] = False
        assert not full[outside].any()
    finally:
        job.keepWorkDir = False
        job._cleanup()


def test_cancel_ends_process_tree_and_adds_nothing(scene, samples, engineEnv, tinyModel):
    volume = loadVolume(scene, samples / "brain1_image.nrrd", name="brain")
    nodesBefore = scene.GetNumberOfNodes()
    settings = segment.SegmentSettings(model=tinyModel.path, samples=200, steps=50)
    job = segment.SegmentationJob(scene, volume, settings, python=sys.executable, env=engineEnv)
    job.start()
    pid, workDir = job.process.pid, job.workDir
    deadline = time.monotonic() + 120
    while not any(e.stage in ("encode", "sample") for e in job.events):  # well inside the run
        job.poll()
        assert not job.finished, job.error
        assert time.monotonic() < deadline
        time.sleep(0.05)
    job.cancel()
    assert job.state == RunState.CANCELLING
    job.wait(timeout=60)
    assert job.state == RunState.IDLE and job.cancelled and not job.succeeded
    assert "Cancelled" in job.message
    assert scene.GetNumberOfNodes() == nodesBefore
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)  # no process of the engine's group is left
    assert not os.path.exists(workDir)


def test_process_tree_terminated_even_when_a_child_ignores_sigterm():
    script = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import signal, time; "
        'signal.signal(signal.SIGTERM, signal.SIG_IGN); print("ready", flush=True); time.sleep(120)\'])\n'
        "print(child.pid, flush=True)\n"
        "time.sleep(120)\n"
    )
    process = runner.EngineProcess([sys.executable, "-c", script])
    process.start()
    seen = []
    deadline = time.monotonic() + 30
    while len(seen) < 2 and time.monotonic() < deadline:
        seen += [line for _, line in process.lines()]
        time.sleep(0.05)
    childPid = int(next(line for line in seen if line.isdigit()))
    start = time.monotonic()
    process.terminateTree(grace=1.0)
    assert time.monotonic() - start < 10
    assert not process.treeAlive()
    with pytest.raises(ProcessLookupError):
        os.kill(childPid, 0)


def test_engine_error_fails_cleanly(scene, samples, engineEnv):
    volume = loadVolume(scene, samples / "breast1_image.nrrd", name="breast")
    nodesBefore = scene.GetNumberOfNodes()
    settings = segment.SegmentSettings(model=str(Path(samples) / "no-such-model.safetensors"), samples=1)
    job = segment.SegmentationJob(scene, volume, settings, python=sys.executable, env=engineEnv)
    job.start()
    job.wait(timeout=120)
    assert job.state == RunState.FAILED and not job.succeeded
    assert "no-such-model" in job.error and "\n" not in job.error
    assert scene.GetNumberOfNodes() == nodesBefore


def test_model_list_and_user_folder(engineEnv, tinyModel):
    assert segment.userModelDir(engineEnv) == os.path.join(engineEnv["LDSEG_HOME"], "models")
    from ldseg.io.models import user_model_dir  # the engine's own rule

    os.environ["LDSEG_HOME"], old = engineEnv["LDSEG_HOME"], os.environ.get("LDSEG_HOME")
    try:
        assert segment.userModelDir() == str(user_model_dir())
    finally:
        os.environ.pop("LDSEG_HOME") if old is None else os.environ.__setitem__("LDSEG_HOME", old)
    assert tinyModel.dims == 3 and tinyModel.channels == 1
    assert "Classes:" in tinyModel.summary() and "3D" in tinyModel.summary()


def addLabeledCase(scene, name, classes):
    """A volume + segmentation pair in the scene, segments named after the model's classes."""
    volume = loadVolume(scene, HIPPOCAMPUS / "images" / f"{name}.nii.gz", name=name)
    labelmap = loadVolume(scene, HIPPOCAMPUS / "labels" / f"{name}.nii.gz", labelmap=True, name=name + "-label")
    segmentationNode = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name + " segmentation")
    segmentationNode.SetReferenceImageGeometryParameterFromVolumeNode(volume)
    assert slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelmap, segmentationNode)
    scene.RemoveNode(labelmap)
    segmentation = segmentationNode.GetSegmentation()
    byValue = {int(c["label_value"]): c["name"] for c in classes}
    for n in range(segmentation.GetNumberOfSegments()):
        segment_ = segmentation.GetNthSegment(n)
        segment_.SetName(byValue[int(segment_.GetLabelValue())])
    return segmentationNode, volume


def test_fine_tune_from_scene_and_folder(scene, engineEnv, tinyModel, tmp_path, monkeypatch):
    candidates = [addLabeledCase(scene, f"hippocampus_{n}", tinyModel.classes) for n in ("006", "008")]
    assert training.sceneTrainingCandidates(scene) == candidates
    folder = tmp_path / "folder"
    for sub in ("images", "labels"):
        (folder / sub).mkdir(parents=True)
        (folder / sub / "hippocampus_011.nii.gz").symlink_to(HIPPOCAMPUS / sub / "hippocampus_011.nii.gz")
    output = os.path.join(segment.userModelDir(engineEnv), "tiny-finetuned-test.safetensors")
    job = training.TrainingJob(
        tinyModel,
        sceneCases=candidates,
        folder=str(folder),
        epochs=1,
        learningRate=1e-4,
        device="cpu",
        outputPath=output,
        python=sys.executable,
        env=engineEnv,
        keepWorkDir=True,
    )
    job.start()
    try:
        # the scene cases were written with the model's label values, on their own geometry
        exported = sitk.GetArrayFromImage(
            sitk.ReadImage(os.path.join(job.workDir, "dataset", "labels", "hippocampus_006_segmentation.nrrd"))
        )
        original = sitk.GetArrayFromImage(sitk.ReadImage(str(HIPPOCAMPUS / "labels" / "hippocampus_006.nii.gz")))
        np.testing.assert_array_equal(exported, original)
        assert job.cases == 3
        job.wait(timeout=300)
        assert job.succeeded, job.error
        assert job.history and job.history[-1].epoch == 1 and np.isfinite(job.history[-1].loss)
        assert 0.0 <= job.history[-1].valDice <= 1.0
        assert "Epoch 1/1" in job.liveText()
    finally:
        job.keepWorkDir = False
        job._cleanup()
    assert os.path.isfile(output)
    monkeypatch.setenv("LDSEG_HOME", engineEnv["LDSEG_HOME"])
    models = segment.listModels()  # in-process, as the module lists them
    mine = [m for m in models if m.path == output]
    assert len(mine) == 1 and mine[0].source == "user"
    assert [c["name"] for c in mine[0].classes] == [c["name"] for c in tinyModel.classes]


def test_fine_tune_for_a_time_budget_alone(engineEnv, tinyModel, tmp_path):
    """Epochs 0 in the panel: no epoch limit, the engine trains for the whole time budget (no
    --epochs reaches it, and the live text counts epochs without a total); with neither an epoch
    count nor a budget nothing starts and nothing is written."""
    folder = tmp_path / "folder"
    for sub in ("images", "labels"):
        (folder / sub).mkdir(parents=True)
        (folder / sub / "hippocampus_011.nii.gz").symlink_to(HIPPOCAMPUS / sub / "hippocampus_011.nii.gz")
    output = str(tmp_path / "models" / "tiny-budget.safetensors")

    def job(epochs, timeBudget):
        return training.TrainingJob(
            tinyModel,
            folder=str(folder),
            epochs=epochs,
            timeBudget=timeBudget,
            device="cpu",
            outputPath=output,
            python=sys.executable,
            env=engineEnv,
        )

    neither = job(0, 0)
    with pytest.raises(ValueError, match="number of epochs, or a time budget"):
        neither.start()
    assert neither.state == RunState.FAILED and not os.path.exists(output)

    budget = job(0, 1)
    budget.start()
    try:
        assert "--epochs" not in budget.process.args and budget.process.args[-2:] == ["--time-budget", "1"]
        deadline = time.monotonic() + 120
        while not budget.history and not budget.finished and time.monotonic() < deadline:
            budget.poll()
            time.sleep(0.05)
        assert budget.history, "\n".join(budget.log[-10:])
        assert budget.history[0].epochs == 0 and budget.liveText().startswith("Epoch 1: loss")
    finally:
        budget.cancel(wait=True)
    assert budget.cancelled and budget.finished and not os.path.exists(output)


def test_self_test_body_runs_on_real_mrml(scene, engineEnv, tinyModel):
    """The module's self-test (LDSegTest runs the same function in Slicer), with the engine."""
    from LDSegLib import selftest

    entry = {**tinyModel.__dict__, "source": "user"}
    logs = []
    skipped = selftest.run(
        scene, log=logs.append, python=sys.executable, env=engineEnv, listFunction=lambda: [dict(entry)]
    )
    assert skipped == []
    assert any(line.startswith("Segmented on") for line in logs) and logs[-1] == "Cancel"
