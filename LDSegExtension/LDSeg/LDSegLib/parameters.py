"""The module's GUI state as a Slicer parameter node, and what a run needs from it.

Inside Slicer the class below is a ``@parameterNodeWrapper``; the ``.ui`` binds its
widgets to these fields through ``SlicerParameterName`` dynamic properties and
``connectGui``. Outside Slicer (tests) the same annotations are kept on a plain
class so the ``.ui`` bindings can be checked against them.
"""

import pathlib
from typing import Annotated, Union

from .segment import DEVICES, SegmentSettings

try:  # Slicer
    from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
except ImportError:  # slicer-core / plain Python: same annotations, no wrapping
    parameterNodeWrapper = None

    class WithinRange:  # noqa: D101 -- stand-in with the same signature
        def __init__(self, minimum, maximum):
            self.minimum, self.maximum = minimum, maximum

    class Choice:  # noqa: D101
        def __init__(self, choices):
            self.choices = list(choices)


try:
    from slicer import vtkMRMLMarkupsROINode, vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode, vtkMRMLVectorVolumeNode
except ImportError:  # documentation builds without MRML
    vtkMRMLMarkupsROINode = vtkMRMLScalarVolumeNode = vtkMRMLSegmentationNode = vtkMRMLVectorVolumeNode = object

#: The volumes a model can take: scalar (CT, MR) and RGB (vector, 2D histology). ``connectGui`` sets the
#: combo box's ``nodeTypes`` to exactly these class names; with ``showChildNodeTypes`` false a subclass
#: (the vector volume of an RGB image, the label map) is shown only when named, so both are named here.
#: ``None`` lets the parameter node hold "no volume" (the wrapper stores a node union's None through it).
InputVolume = Union[vtkMRMLScalarVolumeNode, vtkMRMLVectorVolumeNode, None]


class LDSegParameterNode:
    """GUI state (saved with the scene).

    Segment: inputVolume, roi, useRoi, model (path, set from the model list), device, steps
    (0 = the model's own), samples, seed, probabilities, saveSamples (keep every sample's label map).
    Review: segmentation, uncertainty, sdOpacity, sdThreshold; with samples: showSample, sampleNumber
    (1-based), showFrequency (of the class chosen in the panel).
    Fine-tune: epochs (0 = as many as the time budget allows), timeBudget (minutes, 0 = none),
    learningRate, trainingFolder (a folder of labeled cases; the path widget is bound, so a saved
    scene restores it).
    """

    inputVolume: InputVolume
    roi: vtkMRMLMarkupsROINode
    useRoi: bool = False
    model: str = ""
    device: Annotated[str, Choice(list(DEVICES))] = "auto"
    steps: Annotated[int, WithinRange(0, 1000)] = 0
    samples: Annotated[int, WithinRange(1, 200)] = 10
    seed: Annotated[int, WithinRange(0, 999999)] = 0
    probabilities: bool = False
    saveSamples: bool = False
    segmentation: vtkMRMLSegmentationNode
    uncertainty: vtkMRMLScalarVolumeNode
    sdOpacity: Annotated[float, WithinRange(0.0, 1.0)] = 0.6
    sdThreshold: Annotated[float, WithinRange(0.0, 0.5)] = 0.1
    showSample: bool = False
    sampleNumber: Annotated[int, WithinRange(1, 200)] = 1
    showFrequency: bool = False
    epochs: Annotated[int, WithinRange(0, 10000)] = 20
    timeBudget: Annotated[int, WithinRange(0, 1440)] = 0
    learningRate: Annotated[float, WithinRange(1e-6, 1.0)] = 1e-4
    trainingFolder: pathlib.Path


#: Field names (what ``SlicerParameterName`` in the .ui may refer to).
PARAMETER_NAMES = tuple(LDSegParameterNode.__annotations__)

if parameterNodeWrapper is not None:
    LDSegParameterNode = parameterNodeWrapper(LDSegParameterNode)


def segmentSettings(parameterNode):
    """The run settings of the parameter node's current values."""
    return SegmentSettings(
        model=parameterNode.model,
        device=parameterNode.device,
        steps=parameterNode.steps,
        samples=parameterNode.samples,
        seed=parameterNode.seed,
        probabilities=parameterNode.probabilities,
        saveSamples=parameterNode.saveSamples,
        sdThreshold=parameterNode.sdThreshold,
        sdOpacity=parameterNode.sdOpacity,
    )


def folderText(path):
    """A bound path field as text: "" when unset (the wrapper's empty path reads back as ".")."""
    text = str(path or "")
    return "" if text in ("", ".") else text
