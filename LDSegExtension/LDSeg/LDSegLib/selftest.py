"""The module's self-test body, without Qt: ``LDSegTest`` in ``LDSeg.py`` runs it inside Slicer.

What needs no PyTorch always runs (the model list, the ROI crop geometry). What needs it (a real
engine run, Cancel) is skipped with a message when PyTorch is not installed, as on the extension
build machines: the test then passes and says what it skipped.
"""

import time

import numpy as np

from . import dependencies, logic, review, runner, sceneio, segment


def _blobVolume(scene, name="LDSegTestVolume"):
    """A small blob with a non-trivial geometry (rotated axes, anisotropic spacing, flipped i)."""
    k, j, i = np.indices((12, 40, 36))
    blob = (i - 18) ** 2 / 100.0 + (j - 20) ** 2 / 150.0 + (k - 6) ** 2 / 16.0 < 1.0
    array = (blob * 200 + np.random.default_rng(0).normal(0, 10, blob.shape)).astype(np.float32)
    volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    angle = np.deg2rad(8.0)
    rotation = np.array([[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]])
    matrix = np.eye(4)
    matrix[:3, :3] = rotation @ np.diag([-0.9, 0.9, 2.5])
    matrix[:3, 3] = (20.0, -10.0, 5.0)
    sceneio.setIjkToRasArray(volume, matrix)
    volume.SetAndObserveImageData(sceneio.imageFromArray(array))
    volume.CreateDefaultDisplayNodes()
    return volume, array


def run(scene, log=print, python=None, env=None, listFunction=None, checkDependencies=None, processEvents=None):
    """Run the self-test on ``scene``. Returns the names of the steps skipped; raises AssertionError."""
    skipped = []
    moduleLogic = logic.ModuleLogic(scene, python=python, env=env, listFunction=listFunction)

    log("Model list (in-process, no PyTorch needed)")
    models = moduleLogic.refreshModels()
    assert not moduleLogic.modelListError, moduleLogic.modelListError
    usable = [m for m in models if not m.error and m.channels == 1]
    assert usable, "no usable single-channel model is installed"
    usable.sort(key=lambda m: (m.dims != 3, m.source != "shipped"))
    model = usable[0]

    log("ROI crop geometry")
    volume, array = _blobVolume(scene)
    roi = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "LDSegTestROI")
    roi.SetCenter(*(sceneio.ijkToRasArray(volume) @ np.array([18.0, 20.0, 6.0, 1.0]))[:3])
    roi.SetSize(10.0, 10.0, 10.0)
    (i0, i1), (j0, j1), (k0, k1) = sceneio.roiExtent(volume, roi)
    assert 0 < i0 < 18 < i1 < 36 and 0 < j0 < 20 < j1 < 40, (i0, i1, j0, j1)
    scene.RemoveNode(roi)

    report = (checkDependencies or dependencies.checkDependencies)()
    if report.blocking:
        message = f"Skipped the engine runs: {report.blocking}"
        log(message)
        skipped.append(message)
        return skipped

    log(f"Segmenting with {model.label}")
    settings = segment.SegmentSettings(model=model.path, samples=2, seed=0, sdThreshold=0.05)
    job = moduleLogic.segmentationJob(volume, settings, model)
    job.start()
    job.wait(timeout=900)
    assert job.succeeded, job.error
    result = job.result
    segmentation = result.segmentationNode.GetSegmentation()
    names = [segmentation.GetNthSegment(n).GetName() for n in range(segmentation.GetNumberOfSegments())]
    assert names == [c["name"] for c in model.foregroundClasses], names
    labels = sceneio.exportLabelValues(result.segmentationNode, volume)
    assert labels.shape == array.shape
    assert set(np.unique(labels).tolist()) <= {int(c["label_value"]) for c in model.classes}
    rows = review.segmentStatistics(result.segmentationNode, result.uncertaintyVolumeNode, 0.05)
    assert len(rows) == len(names)
    log(f"Segmented on {job.deviceUsed} in {job.seconds:.1f} s")

    log("Cancel")
    nodes = scene.GetNumberOfNodes()
    job = moduleLogic.segmentationJob(volume, segment.SegmentSettings(model=model.path, samples=100), model)
    job.start()
    while not job.events and not job.finished:
        job.poll()
        if processEvents:
            processEvents()
        time.sleep(0.05)
    job.cancel(wait=True)
    assert job.cancelled or job.succeeded
    if job.cancelled:
        assert scene.GetNumberOfNodes() == nodes
    assert job.state == runner.RunState.IDLE
    return skipped
