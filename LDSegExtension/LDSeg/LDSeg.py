"""LDSeg: latent diffusion segmentation with per-voxel uncertainty, in 3D Slicer (5.8 or later).

The module file only names the parts Slicer looks for. The logic is the Qt-free package
``LDSegLib`` (tested on slicer-core), the panel is ``LDSegWidgets.widget``.
"""

import logging

import slicer
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
)

from LDSegLib import MINIMUM_SLICER, MODULE_VERSION, selftest, slicerTooOld
from LDSegLib.logic import ModuleLogic
from LDSegLib.parameters import LDSegParameterNode
from LDSegWidgets.widget import LDSegWidgetBase


class LDSeg(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("LDSeg")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = []
        self.parent.contributors = ["LDSeg contributors"]
        self.parent.helpText = _("""
Segment a volume with a latent diffusion model (LDSeg) and see where the model is unsure.
<ul>
<li><b>Segment</b>: pick the volume (scalar or RGB, optionally an ROI), a model and the number of samples.
The engine runs in a separate process; the button turns into <i>Cancel</i>. The device actually used is shown.</li>
<li><b>Results &amp; Review</b>: one segment per class with its standard terminology, the per-voxel standard
deviation (SD) over the samples as an Inferno overlay, a per-segment table, <i>next/previous uncertain region</i>,
an editable <i>uncertain</i> segment for Segment Editor, and <i>Add ... to the fine-tuning cases</i> once corrected.
With <i>Keep individual samples</i> checked before Segment, step through the samples (outlines of the alternative
segmentations the model considers plausible) or show how often each voxel is voted a class.</li>
<li><b>Fine-tune</b>: train the selected model on your corrected cases (and others); the new model is selected
and your last corrected case is segmented again, showing how much the result changed.</li>
</ul>
Module version {version}; needs 3D Slicer {slicer} or later.""").format(version=MODULE_VERSION, slicer=MINIMUM_SLICER)
        tooOld = slicerTooOld(slicer.app.majorVersion, slicer.app.minorVersion)
        if tooOld:
            logging.warning(tooOld)
        self.parent.acknowledgementText = _("""
LDSeg follows Zaman et al., "Latent Diffusion for Medical Image Segmentation: End to end learning for fast
sampling and accuracy" (LDSeg). The extension layout follows Slicer's extension templates.""")


class LDSegLogic(ScriptedLoadableModuleLogic, ModuleLogic):
    """Slicer's logic base (parameter node) with the module's Qt-free logic (LDSegLib.logic)."""

    def getParameterNode(self):
        return LDSegParameterNode(super().getParameterNode())


class LDSegWidget(LDSegWidgetBase):
    def createLogic(self):
        return LDSegLogic()


class LDSegTest(ScriptedLoadableModuleTest):
    """Model list and geometry always; a real engine run and Cancel when PyTorch is installed."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_LDSeg()

    def test_LDSeg(self):
        self.delayDisplay("Starting the LDSeg self-test")
        skipped = selftest.run(slicer.mrmlScene, log=self.delayDisplay, processEvents=slicer.app.processEvents)
        logging.info("LDSeg self-test passed" + (f" ({'; '.join(skipped)})" if skipped else ""))
        self.delayDisplay("Test passed" + (" (engine runs skipped: no PyTorch)" if skipped else ""))
