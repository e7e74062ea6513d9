"""The spread of a result, not only its SD: the individual samples and the per-voxel class frequency.

A result made with "Keep individual samples" has a sequence of the samples' label maps (see
:func:`sceneio.addSampleSequence`) whose browser's proxy label map shows one sample at a time,
as outlines in the slice views' label layer, over the result's segmentation. The class frequency
(the fraction of samples voting a class at each voxel) is computed here from the samples and
shown in the foreground layer, where the SD overlay is otherwise.
"""

import json

import numpy as np

from . import sceneio
from .colormaps import getViridisColorNode

ATTR_FREQUENCY_OF = "LDSeg.FrequencyOf"  # on the frequency volume: "<label value>/<sample count>"
ATTR_OUTLINE_BEFORE = "LDSeg.LabelOutlineBefore"  # on slice nodes: their outline setting before a sample showed


def sampleBrowser(segmentationNode):
    """The samples' sequence browser of a result (None when the result has no samples)."""
    if segmentationNode is None:
        return None
    return segmentationNode.GetNodeReference(sceneio.REF_SAMPLES)


def _sequence(browser):
    get = getattr(browser, "GetPrimarySequenceNode", None) or browser.GetMasterSequenceNode
    return get()


def sampleCount(segmentationNode):
    """How many samples the result has (0 when its sequence was deleted or no proxy shows them)."""
    browser = sampleBrowser(segmentationNode)
    sequence = _sequence(browser) if browser is not None else None
    if sequence is None or browser.GetProxyNode(sequence) is None:
        return 0
    return sequence.GetNumberOfDataNodes()


def sampleProxy(segmentationNode):
    """The label map that shows the selected sample."""
    browser = sampleBrowser(segmentationNode)
    return browser.GetProxyNode(_sequence(browser)) if browser is not None else None


def sampleClasses(segmentationNode):
    """The foreground classes of the samples (dicts with name and label_value), in the model's order."""
    browser = sampleBrowser(segmentationNode)
    if browser is None:
        return []
    return sceneio.foregroundClasses(json.loads(_sequence(browser).GetAttribute(sceneio.ATTR_CLASSES) or "[]"))


def shownSample(segmentationNode):
    """1-based number of the sample the proxy shows (0 when there are none)."""
    browser = sampleBrowser(segmentationNode)
    return browser.GetSelectedItemNumber() + 1 if browser is not None and sampleCount(segmentationNode) else 0


def _checkSamples(segmentationNode):
    if not sampleCount(segmentationNode):
        name = segmentationNode.GetName() if segmentationNode is not None else "(none)"
        raise ValueError(f"'{name}' has no individual samples: check 'Keep individual samples' and segment again.")


def showSample(segmentationNode, number):
    """Show sample ``number`` (1..N) as outlines in the label layer of every slice view."""
    _checkSamples(segmentationNode)
    count = sampleCount(segmentationNode)
    if not 1 <= int(number) <= count:
        raise ValueError(f"Sample {number} does not exist: the result has samples 1 to {count}.")
    browser = sampleBrowser(segmentationNode)
    if browser.GetSelectedItemNumber() != int(number) - 1:
        browser.SetSelectedItemNumber(int(number) - 1)  # Slicer's Sequences logic fills the proxy
    proxy = sampleProxy(segmentationNode)
    scene = segmentationNode.GetScene()
    for composite in sceneio.sliceCompositeNodes(scene):
        composite.SetLabelVolumeID(proxy.GetID())
        composite.SetLabelOpacity(1.0)
    for sliceNode in sceneio.sliceNodes(scene):
        # outlines, so the sample's borders show over the result's own filled segments
        if sliceNode.GetAttribute(ATTR_OUTLINE_BEFORE) is None:
            sliceNode.SetAttribute(ATTR_OUTLINE_BEFORE, "1" if sliceNode.GetUseLabelOutline() else "0")
        sliceNode.SetUseLabelOutline(True)
    return proxy


def hideSample(segmentationNode):
    """Take the result's sample out of the slice views (other label maps are left alone)."""
    proxy = sampleProxy(segmentationNode)
    if proxy is None:
        return
    scene = segmentationNode.GetScene()
    for composite in sceneio.sliceCompositeNodes(scene):
        if composite.GetLabelVolumeID() == proxy.GetID():
            composite.SetLabelVolumeID(None)
    _restoreOutlines(scene)


def _restoreOutlines(scene):
    showing = {c.GetLabelVolumeID() for c in sceneio.sliceCompositeNodes(scene)} - {None, ""}
    if any(scene.GetNodeByID(i) is not None and _isSampleProxy(scene, i) for i in showing):
        return  # another result's sample still shows
    for sliceNode in sceneio.sliceNodes(scene):
        before = sliceNode.GetAttribute(ATTR_OUTLINE_BEFORE)
        if before is not None:
            sliceNode.SetUseLabelOutline(before == "1")
            sliceNode.RemoveAttribute(ATTR_OUTLINE_BEFORE)


def _isSampleProxy(scene, nodeId):
    for n in range(scene.GetNumberOfNodesByClass("vtkMRMLSequenceBrowserNode")):
        if scene.GetNthNodeByClass(n, "vtkMRMLSequenceBrowserNode").IsProxyNodeID(nodeId):
            return True
    return False


def classFrequency(segmentationNode, labelValue):
    """Fraction of the samples voting the class ``labelValue`` at each voxel (float32, ``[k, j, i]``)."""
    _checkSamples(segmentationNode)
    sequence = _sequence(sampleBrowser(segmentationNode))
    count = sequence.GetNumberOfDataNodes()
    votes = None
    for n in range(count):  # one sample at a time: no N-fold copy
        hit = sceneio.arrayFromImage(sequence.GetNthDataNode(n)) == int(labelValue)
        votes = hit.astype(np.uint16) if votes is None else votes + hit
    return (votes / np.float32(count)).astype(np.float32)


def frequencyVolume(segmentationNode):
    return segmentationNode.GetNodeReference(sceneio.REF_FREQUENCY) if segmentationNode is not None else None


def showFrequency(segmentationNode, labelValue, opacity=0.6):
    """The frequency of class ``labelValue`` over the samples in the foreground layer (Viridis, 0..1; voxels
    no sample votes for are transparent). One volume per result, refilled when the class changes."""
    _checkSamples(segmentationNode)
    classes = {int(c["label_value"]): str(c["name"]) for c in sampleClasses(segmentationNode)}
    if int(labelValue) not in classes:
        raise ValueError(f"The result has no class with label value {labelValue}.")
    scene = segmentationNode.GetScene()
    count = sampleCount(segmentationNode)
    key = f"{int(labelValue)}/{count}"
    node = frequencyVolume(segmentationNode)
    proxy = sampleProxy(segmentationNode)
    inputNode = segmentationNode.GetNodeReference(sceneio.REF_INPUT)
    inputName = inputNode.GetName() if inputNode is not None else segmentationNode.GetName()
    name = f"{inputName} LDSeg {classes[int(labelValue)]} frequency"
    if node is None:
        node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", scene.GenerateUniqueName(name))
        node.CreateDefaultDisplayNodes()
        node.SetAndObserveTransformNodeID(proxy.GetTransformNodeID())
        segmentationNode.SetNodeReferenceID(sceneio.REF_FREQUENCY, node.GetID())
        if inputNode is not None:
            sceneio.placeUnder(scene, node, inputNode)
    if node.GetAttribute(ATTR_FREQUENCY_OF) != key:  # computed once per class, not on every slider move
        sceneio.setIjkToRasArray(node, sceneio.ijkToRasArray(proxy))
        node.SetAndObserveImageData(sceneio.imageFromArray(classFrequency(segmentationNode, labelValue)))
        node.SetAttribute(ATTR_FREQUENCY_OF, key)
        node.SetName(name)
    display = node.GetDisplayNode()
    display.SetAndObserveColorNodeID(getViridisColorNode(scene).GetID())
    display.AutoWindowLevelOff()
    display.SetWindowLevelMinMax(0.0, 1.0)
    display.SetApplyThreshold(True)
    display.SetLowerThreshold(0.5 / count)  # below one vote: transparent
    display.SetUpperThreshold(2.0)
    display.SetInterpolate(False)
    for composite in sceneio.sliceCompositeNodes(scene):
        composite.SetForegroundVolumeID(node.GetID())
        composite.SetForegroundOpacity(float(opacity))
    return node


def hideFrequency(segmentationNode, opacity=0.6):
    """Give the foreground layer back to the result's SD overlay where the frequency shows."""
    node = frequencyVolume(segmentationNode)
    if node is None:
        return
    sdNode = segmentationNode.GetNodeReference(sceneio.REF_UNCERTAINTY)
    for composite in sceneio.sliceCompositeNodes(segmentationNode.GetScene()):
        if composite.GetForegroundVolumeID() == node.GetID():
            composite.SetForegroundVolumeID(sdNode.GetID() if sdNode is not None else None)
            composite.SetForegroundOpacity(float(opacity))


def hideOtherResults(scene, segmentationNode):
    """Take every other result's sample and frequency out of the views (switching results, a new run)."""
    keep = segmentationNode.GetID() if segmentationNode is not None else None
    for n in range(scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode")):
        other = scene.GetNthNodeByClass(n, "vtkMRMLSegmentationNode")
        if other.GetID() != keep and sampleBrowser(other) is not None:
            hideSample(other)
            hideFrequency(other)


def describeSamples(segmentationNode):
    """One line for the panel: what the samples controls can do for the selected result."""
    count = sampleCount(segmentationNode)
    if segmentationNode is None:
        return ""
    if not count:
        return "No individual samples in this result: check 'Keep individual samples' and segment again."
    return f"{count} samples: step through them, or see how often each voxel is voted a class."


def resultNodes(scene):
    """IDs of the nodes this module made for the samples (not inputs for a new run)."""
    out = set()
    for n in range(scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode")):
        seg = scene.GetNthNodeByClass(n, "vtkMRMLSegmentationNode")
        for node in (sampleProxy(seg), frequencyVolume(seg)):
            if node is not None:
                out.add(node.GetID())
    return out
