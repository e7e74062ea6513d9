"""The module's GUI state as a Slicer parameter node, and what a run needs from it.

Inside Slicer the class below is a ``@parameterNodeWrapper``; the ``.ui`` binds its
widgets to these fields through ``SlicerParameterName`` dynamic properties and
``connectGui``. Outside Slicer (tests) the same annotations are kept on a plain
class so the ``.ui`` bindings can be checked against them.
"""

from typing import Annotated

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
    from slicer import vtkMRMLMarkupsROINode, vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
except ImportError:  # documentation builds without MRML
    vtkMRMLMarkupsROINode = vtkMRMLScalarVolumeNode = vtkMRMLSegmentationNode = object

from .segment import DEVICES, SegmentSettings


class LDSegParameterNode:
    """GUI state (saved with the scene).

    Segment: inputVolume, roi, useRoi, model (path, set from the model list), device, steps
    (0 = the model's own), samples, seed, probabilities.
    Review: segmentation, uncertainty, sdOpacity, sdThreshold.
    Fine-tune: epochs, learningRate, trainingFolder.
    """

    inputVolume: vtkMRMLScalarVolumeNode
    roi: vtkMRMLMarkupsROINode
    useRoi: bool = False
    model: str = ""
    device: Annotated[str, Choice(list(DEVICES))] = "auto"
    steps: Annotated[int, WithinRange(0, 1000)] = 0
    samples: Annotated[int, WithinRange(1, 200)] = 10
    seed: Annotated[int, WithinRange(0, 999999)] = 0
    probabilities: bool = False
    segmentation: vtkMRMLSegmentationNode
    uncertainty: vtkMRMLScalarVolumeNode
    sdOpacity: Annotated[float, WithinRange(0.0, 1.0)] = 0.6
    sdThreshold: Annotated[float, WithinRange(0.0, 0.5)] = 0.1
    epochs: Annotated[int, WithinRange(1, 10000)] = 20
    learningRate: Annotated[float, WithinRange(1e-6, 1.0)] = 1e-4
    trainingFolder: str = ""


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
        sdThreshold=parameterNode.sdThreshold,
        sdOpacity=parameterNode.sdOpacity,
    )
