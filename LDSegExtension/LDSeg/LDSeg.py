"""LDSeg: latent diffusion segmentation with per-voxel uncertainty, in 3D Slicer.

Module, widget and self-test only. The logic (engine runner, scene import, review,
fine-tuning, dependency checks) is the Qt-free package ``LDSegLib`` next to this file;
the widget wires ``Resources/UI/LDSeg.ui`` to it through a parameter node.
"""

import logging
import time

import numpy as np
import qt
import slicer
import vtk
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from LDSegLib import MODULE_VERSION, dependencies, review, runner, sceneio, segment, training
from LDSegLib.parameters import LDSegParameterNode, segmentSettings
from LDSegLib.runner import RunState

POLL_MS = 100


class LDSeg(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("LDSeg")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = []
        self.parent.contributors = ["LDSeg contributors"]
        self.parent.helpText = _(f"""
Segment a volume with a latent diffusion model (LDSeg) and see where the model is unsure.
<ul>
<li><b>Segment</b>: pick the volume (optionally an ROI), a model and the number of samples. The engine runs
in a separate process; the button turns into <i>Cancel</i>. The device actually used is shown.</li>
<li><b>Results &amp; Review</b>: one segment per class, the per-voxel standard deviation (SD) over the samples
as an Inferno overlay, a per-segment table, <i>next/previous uncertain region</i>, and an editable
<i>uncertain</i> segment for Segment Editor.</li>
<li><b>Fine-tune</b>: train the selected model further on your labeled cases; the new model appears in the list.</li>
</ul>
Module version {MODULE_VERSION}.""")
        self.parent.acknowledgementText = _("""
LDSeg follows Zaman et al., "Latent Diffusion for Medical Image Segmentation: End to end learning for fast
sampling and accuracy" (LDSeg). The extension layout follows Slicer's extension templates.""")


class LDSegLogic(ScriptedLoadableModuleLogic):
    """Creates runs; everything else lives in LDSegLib."""

    def getParameterNode(self):
        return LDSegParameterNode(super().getParameterNode())

    def segmentationJob(self, parameterNode, modelTitle=None):
        roi = parameterNode.roi if parameterNode.useRoi else None
        return segment.SegmentationJob(
            slicer.mrmlScene,
            parameterNode.inputVolume,
            segmentSettings(parameterNode),
            roiNode=roi,
            modelTitle=modelTitle,
            python=runner.pythonExecutable(),
        )

    @staticmethod
    def installTorch(specifier):
        try:
            import PyTorchUtils
        except ImportError:
            return None
        return PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False, torchVersionRequirement=specifier)

    def ensureDependencies(self, ask=True):
        """Check the engine's needs; offer to install what is missing. Returns the (new) report."""
        report = dependencies.checkDependencies()
        if report.toInstall and ask:
            torchInstaller = self.installTorch if _hasPyTorchExtension() else None
            dependencies.installMissing(
                report, slicer.util.confirmOkCancelDisplay, slicer.util.pip_install, installTorch=torchInstaller
            )
            report = dependencies.checkDependencies()
        return report


def _hasPyTorchExtension():
    try:
        import PyTorchUtils  # noqa: F401

        return True
    except ImportError:
        return False


class LDSegWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self.job = None
        self.trainingJob = None
        self.models = []
        self.trainingCandidates = []
        self.navigator = review.UncertainRegionNavigator()
        self.dependencyReport = None
        self._loggedEpochs = 0

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/LDSeg.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = LDSegLogic()

        self.timer = qt.QTimer()
        self.timer.setInterval(POLL_MS)
        self.timer.connect("timeout()", self.onTimer)
        import ctk

        self.ui.trainingFolderEdit.filters = ctk.ctkPathLineEdit.Dirs
        self.ui.reviewTable.setColumnCount(len(review.TABLE_HEADER))
        self.ui.reviewTable.setHorizontalHeaderLabels(review.TABLE_HEADER)
        self.ui.userModelFolderLabel.text = segment.userModelDir()

        self.ui.segmentButton.connect("clicked(bool)", self.onSegmentButton)
        self.ui.refreshModelsButton.connect("clicked(bool)", self.refreshModels)
        self.ui.modelSelector.connect("currentIndexChanged(int)", self.onModelChanged)
        self.ui.refreshReviewButton.connect("clicked(bool)", self.updateReview)
        self.ui.nextRegionButton.connect("clicked(bool)", lambda: self.onRegion(+1))
        self.ui.previousRegionButton.connect("clicked(bool)", lambda: self.onRegion(-1))
        self.ui.createUncertainSegmentButton.connect("clicked(bool)", self.onCreateUncertainSegment)
        self.ui.refreshCasesButton.connect("clicked(bool)", self.refreshTrainingCases)
        self.ui.fineTuneButton.connect("clicked(bool)", self.onFineTuneButton)
        self.ui.checkDependenciesButton.connect("clicked(bool)", self.onCheckDependencies)
        self.ui.trainingFolderEdit.connect("currentPathChanged(QString)", self.onTrainingFolderChanged)
        self.ui.trainingCasesList.connect("itemChanged(QListWidgetItem*)", lambda item: self.onParameterChanged())

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.initializeParameterNode()
        qt.QTimer.singleShot(0, self.refreshModels)

    def cleanup(self):
        for job in (self.job, self.trainingJob):
            if job is not None and job.state == RunState.RUNNING:
                job.cancel(wait=True)
        self.timer.stop()
        self.removeObservers()

    def enter(self):
        self.initializeParameterNode()

    def exit(self):
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.onParameterChanged)

    def onSceneStartClose(self, caller, event):
        if self.job is not None and self.job.state == RunState.RUNNING:
            self.job.cancel(wait=True)
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    # -- parameter node
    def initializeParameterNode(self):
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            first = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if first and not first.IsA("vtkMRMLLabelMapVolumeNode"):
                self._parameterNode.inputVolume = first

    def setParameterNode(self, parameterNode):
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.onParameterChanged)
        self._parameterNode = parameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.onParameterChanged)
            self.onParameterChanged()

    def onParameterChanged(self, caller=None, event=None):
        p = self._parameterNode
        if p is None:
            return
        running = self.job is not None and self.job.busy
        if not running:
            self.ui.segmentButton.enabled = bool(
                p.inputVolume and self.currentModel() and not self.currentModel().error
            )
        self.ui.roiSelector.enabled = p.useRoi
        if p.uncertainty:
            sceneio.setOverlayOpacity(slicer.mrmlScene, p.uncertainty, p.sdOpacity)
            sceneio.setOverlayThreshold(p.uncertainty, p.sdThreshold)
        training_ = self.trainingJob is not None and self.trainingJob.busy
        if not training_:
            self.ui.fineTuneButton.enabled = bool(self.currentModel()) and bool(
                self.checkedTrainingCases() or p.trainingFolder
            )

    # -- models
    def currentModel(self):
        index = self.ui.modelSelector.currentIndex
        return self.models[index] if 0 <= index < len(self.models) else None

    def refreshModels(self, select=None):
        with slicer.util.tryWithErrorDisplay(_("Could not list the LDSeg models."), waitCursor=True):
            self.models = [m for m in segment.listModels()]
        wanted = select or (self._parameterNode.model if self._parameterNode else "")
        self.ui.modelSelector.blockSignals(True)
        self.ui.modelSelector.clear()
        for model in self.models:
            self.ui.modelSelector.addItem(model.label, model.path)
        paths = [m.path for m in self.models]
        self.ui.modelSelector.setCurrentIndex(paths.index(wanted) if wanted in paths else (0 if paths else -1))
        self.ui.modelSelector.blockSignals(False)
        self.onModelChanged()

    def onModelChanged(self, index=None):
        model = self.currentModel()
        self.ui.modelInfoLabel.text = (
            model.summary() if model else _("No model found. Reinstall LDSeg or fine-tune one.")
        )
        if self._parameterNode is not None:
            self._parameterNode.model = model.path if model else ""
        self.onParameterChanged()

    # -- segment
    def onSegmentButton(self):
        if self.job is not None and self.job.state == RunState.RUNNING:
            self.job.cancel()
            self.updateRunDisplay()
            return
        with slicer.util.tryWithErrorDisplay(_("Could not start the segmentation."), waitCursor=True):
            if not self.checkDependenciesOnce():
                return
            p = self._parameterNode
            problem = segment.checkInputAgainstModel(p.inputVolume, self.currentModel())
            if problem:
                raise ValueError(problem)
            self.job = self.logic.segmentationJob(p, modelTitle=self.currentModel().label)
            self.job.start()
            self.ui.segmentButton.text = _("Cancel")
            self.ui.deviceUsedLabel.text = "-"
            self.ui.cpuWarningLabel.visible = False
            self.timer.start()

    def checkDependenciesOnce(self):
        if self.dependencyReport is None or not self.dependencyReport.ok:
            self.dependencyReport = self.logic.ensureDependencies(ask=True)
            self.ui.dependencyStatusLabel.text = self.dependencyReport.describe()
        if self.dependencyReport.mismatch:
            slicer.util.warningDisplay(self.dependencyReport.mismatch)
        return not self.dependencyReport.missing

    def onTimer(self):
        if self.job is not None and not self.job.finished:
            self.job.poll()
            self.updateRunDisplay()
            if self.job.finished:
                self.onSegmentationFinished()
        if self.trainingJob is not None and not self.trainingJob.finished:
            self.trainingJob.poll()
            self.updateTrainingDisplay()
            if self.trainingJob.finished:
                self.onTrainingFinished()
        if not any(j is not None and not j.finished for j in (self.job, self.trainingJob)):
            self.timer.stop()

    def updateRunDisplay(self):
        job = self.job
        self.ui.progressBar.value = int(round(100 * job.fraction))
        remaining = job.remainingEstimate()
        suffix = f" (about {remaining:.0f} s left)" if remaining is not None else ""
        self.ui.statusLabel.text = f"{job.message}{suffix}"
        if job.deviceUsed:
            self.ui.deviceUsedLabel.text = job.deviceUsed
            self.ui.cpuWarningLabel.text = segment.CPU_WARNING
            self.ui.cpuWarningLabel.visible = job.onCpu
        if job.state == RunState.CANCELLING:
            self.ui.segmentButton.enabled = False

    def onSegmentationFinished(self):
        job = self.job
        self.ui.segmentButton.text = _("Segment")
        self.ui.segmentButton.enabled = True
        self.updateRunDisplay()
        if job.succeeded:
            self._parameterNode.segmentation = job.result.segmentationNode
            self._parameterNode.uncertainty = job.result.uncertaintyVolumeNode
            self.updateReview()
        elif job.state == RunState.FAILED:
            slicer.util.errorDisplay(_("Segmentation failed: ") + job.error, detailedText="\n".join(job.log[-40:]))
        self.onParameterChanged()

    # -- review
    def updateReview(self):
        p = self._parameterNode
        if not (p.segmentation and p.uncertainty):
            return
        with slicer.util.tryWithErrorDisplay(_("Could not compute the review statistics."), waitCursor=True):
            rows = review.segmentStatistics(p.segmentation, p.uncertainty, p.sdThreshold)
            table = self.ui.reviewTable
            table.setRowCount(len(rows))
            for r, stats in enumerate(rows):
                for c, text in enumerate(stats.row()):
                    table.setItem(r, c, qt.QTableWidgetItem(text))
            table.resizeColumnsToContents()
            self.navigator = review.UncertainRegionNavigator(review.uncertainRegions(p.uncertainty, p.sdThreshold))
            self.ui.regionLabel.text = (
                _("{count} regions above the SD threshold.").format(count=len(self.navigator.regions))
                if self.navigator.regions
                else self.navigator.describe()
            )

    def onRegion(self, step):
        if not self.navigator.regions:
            self.updateReview()
        region = self.navigator.next() if step > 0 else self.navigator.previous()
        if region is not None:
            review.jumpSlicesTo(slicer.mrmlScene, region.centroidRas)
        self.ui.regionLabel.text = self.navigator.describe()

    def onCreateUncertainSegment(self):
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("Could not create the uncertain segment."), waitCursor=True):
            if not (p.segmentation and p.uncertainty):
                raise ValueError(_("Select a segmentation and its uncertainty volume first."))
            review.createUncertainSegment(p.segmentation, p.uncertainty, p.sdThreshold)
            self.ui.regionLabel.text = _("Added the segment 'uncertain': correct it in Segment Editor.")

    # -- fine-tune
    def refreshTrainingCases(self):
        self.trainingCandidates = training.sceneTrainingCandidates(slicer.mrmlScene)
        self.ui.trainingCasesList.clear()
        for segmentationNode, volumeNode in self.trainingCandidates:
            item = qt.QListWidgetItem(f"{segmentationNode.GetName()}  \u2190  {volumeNode.GetName()}")
            item.setFlags(item.flags() | qt.Qt.ItemIsUserCheckable)
            item.setCheckState(qt.Qt.Unchecked)
            self.ui.trainingCasesList.addItem(item)
        self.onParameterChanged()

    def checkedTrainingCases(self):
        checked = []
        for row, pair in enumerate(self.trainingCandidates):
            item = self.ui.trainingCasesList.item(row)
            if item is not None and item.checkState() == qt.Qt.Checked:
                checked.append(pair)
        return checked

    def onTrainingFolderChanged(self, path):
        self._parameterNode.trainingFolder = path

    def onFineTuneButton(self):
        if self.trainingJob is not None and self.trainingJob.state == RunState.RUNNING:
            self.trainingJob.cancel()
            return
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("Could not start fine-tuning."), waitCursor=True):
            if not self.checkDependenciesOnce():
                return
            self.trainingJob = training.TrainingJob(
                self.currentModel(),
                sceneCases=self.checkedTrainingCases(),
                folder=p.trainingFolder,
                epochs=p.epochs,
                learningRate=p.learningRate,
                device=p.device,
                python=runner.pythonExecutable(),
            )
            self.trainingJob.start()
            self._loggedEpochs = 0
            self.ui.trainingLog.clear()
            self.ui.fineTuneButton.text = _("Cancel fine-tuning")
            self.timer.start()

    def updateTrainingDisplay(self):
        job = self.trainingJob
        self.ui.trainingProgressBar.value = int(round(100 * job.fraction))
        self.ui.trainingStatusLabel.text = job.liveText() if job.state == RunState.RUNNING else job.message
        for record in job.history[self._loggedEpochs :]:
            self.ui.trainingLog.appendPlainText(
                f"epoch {record.epoch}/{record.epochs}  loss {record.loss:.4f}  val Dice {record.valDice:.3f}"
            )
        self._loggedEpochs = len(job.history)

    def onTrainingFinished(self):
        job = self.trainingJob
        self.ui.fineTuneButton.text = _("Fine-tune")
        self.updateTrainingDisplay()
        if job.succeeded:
            self.refreshModels(select=job.result)
            slicer.util.infoDisplay(_("The fine-tuned model is ready and selected:\n") + job.result)
        elif job.state == RunState.FAILED:
            slicer.util.errorDisplay(_("Fine-tuning failed: ") + job.error, detailedText="\n".join(job.log[-40:]))
        self.onParameterChanged()

    # -- settings
    def onCheckDependencies(self):
        with slicer.util.tryWithErrorDisplay(_("Could not install the dependencies."), waitCursor=True):
            self.dependencyReport = self.logic.ensureDependencies(ask=True)
            self.ui.dependencyStatusLabel.text = self.dependencyReport.describe()


class LDSegTest(ScriptedLoadableModuleTest):
    """Runs a small real model end to end in Slicer: segment, review, cancel."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_SegmentReviewCancel()

    def _model(self):
        models = [m for m in segment.listModels() if not m.error and m.channels == 1]
        models.sort(key=lambda m: (m.dims != 3, m.source != "shipped"))
        if not models:
            self.skipTest("No usable LDSeg model is installed.")
        return models[0]

    def test_SegmentReviewCancel(self):
        self.delayDisplay("Starting the LDSeg end-to-end test")
        report = dependencies.checkDependencies()
        self.assertFalse(report.missing, report.describe())
        model = self._model()

        # a small blob volume with non-identity geometry
        k, j, i = np.indices((12, 40, 36))
        blob = (i - 18) ** 2 / 100.0 + (j - 20) ** 2 / 150.0 + (k - 6) ** 2 / 16.0 < 1.0
        array = (blob * 200 + np.random.default_rng(0).normal(0, 10, blob.shape)).astype(np.float32)
        volume = slicer.util.addVolumeFromArray(
            array,
            ijkToRAS=np.array([[-0.9, 0, 0, 20], [0, 0.9, 0.1, -10], [0, -0.05, 2.5, 5], [0, 0, 0, 1]]),
            name="LDSegTestVolume",
        )

        settings = segment.SegmentSettings(model=model.path, samples=2, seed=0, sdThreshold=0.05)
        job = segment.SegmentationJob(slicer.mrmlScene, volume, settings, python=runner.pythonExecutable())
        job.start()
        job.wait(timeout=900)
        self.assertTrue(job.succeeded, job.error)
        result = job.result
        segmentation = result.segmentationNode.GetSegmentation()
        names = [segmentation.GetNthSegment(n).GetName() for n in range(segmentation.GetNumberOfSegments())]
        self.assertEqual(names, [c["name"] for c in model.classes if c["label_value"] != 0])
        labels = sceneio.exportLabelValues(result.segmentationNode, volume)
        self.assertEqual(labels.shape, array.shape)
        self.assertTrue(set(np.unique(labels)) <= {c["label_value"] for c in model.classes})
        rows = review.segmentStatistics(result.segmentationNode, result.uncertaintyVolumeNode, 0.05)
        self.assertEqual(len(rows), len(names))
        self.delayDisplay(f"Segmented on {job.deviceUsed} in {job.seconds:.1f} s")

        nodes = slicer.mrmlScene.GetNumberOfNodes()
        job = segment.SegmentationJob(
            slicer.mrmlScene,
            volume,
            segment.SegmentSettings(model=model.path, samples=100),
            python=runner.pythonExecutable(),
        )
        job.start()
        while not job.events and not job.finished:
            job.poll()
            slicer.app.processEvents()
            time.sleep(0.05)
        job.cancel(wait=True)
        self.assertTrue(job.cancelled or job.succeeded)
        if job.cancelled:
            self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), nodes)
        logging.info("LDSeg self-test passed")
        self.delayDisplay("Test passed")
