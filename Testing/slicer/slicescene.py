"""A scene set up the way the Slicer application does it, on slicer-core (no Slicer needed).

Application logic + color logic ("Colors": Slicer's built-in color tables), the volumes and
segmentations logics given the scene (the latter registers the segmentation converters), the
sequences logic (it fills a sequence browser's proxy nodes when the browser steps), and
the three slice views Red / Yellow / Green with their slice logics and composite nodes.
"""

from pathlib import Path

import slicer

ORIENTATIONS = {"Red": "Axial", "Yellow": "Sagittal", "Green": "Coronal"}


def makeScene():
    scene = slicer.vtkMRMLScene()
    app = slicer.vtkSlicerApplicationLogic()
    app.SetMRMLScene(scene)
    colors = slicer.vtkSlicerColorLogic()
    colors.SetMRMLScene(scene)
    app.SetModuleLogic("Colors", colors)
    volumes = slicer.vtkSlicerVolumesLogic()
    volumes.SetMRMLScene(scene)
    segmentations = slicer.vtkSlicerSegmentationsModuleLogic()
    segmentations.SetMRMLScene(scene)
    sequences = slicer.vtkSlicerSequencesLogic()
    sequences.SetMRMLScene(scene)
    app.SetModuleLogic("Sequences", sequences)
    sliceLogics = {}
    for name, orientation in ORIENTATIONS.items():
        logic = slicer.vtkMRMLSliceLogic()
        logic.SetMRMLScene(scene)
        sliceNode = logic.AddSliceNode(name)
        getattr(sliceNode, f"SetOrientationTo{orientation}")()
        sliceLogics[name] = logic
    slicer.mrmlScene = scene
    scene._ldsegKeep = {
        "app": app,
        "colors": colors,
        "volumes": volumes,
        "segmentations": segmentations,
        "sequences": sequences,
        "sliceLogics": sliceLogics,
    }  # alive as long as the scene
    return scene


def sliceLogic(scene, name="Red"):
    return scene._ldsegKeep["sliceLogics"][name]


def loadVolume(scene, path, labelmap=False, name=None):
    node = scene.AddNewNodeByClass(
        "vtkMRMLLabelMapVolumeNode" if labelmap else "vtkMRMLScalarVolumeNode", name or Path(path).name.split(".")[0]
    )
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storage.SetFileName(str(path))
    assert storage.ReadData(node), f"could not read {path}"
    node.CreateDefaultDisplayNodes()
    return node
