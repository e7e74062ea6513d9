"""The LDSeg module panel: wires ``Resources/UI/LDSeg.ui`` to ``LDSegLib`` through a parameter node.

Every decision is made in ``LDSegLib`` (tested on slicer-core); this file only reads the panel,
calls the logic, and shows states, progress and results. Engine runs are polled by a QTimer
(``runner.pollJobs``), so the GUI never waits on an engine process.
"""

import os

import qt
import slicer
import vtk
from slicer.i18n import tr as _
from slicer.ScriptedLoadableModule import ScriptedLoadableModuleWidget
from slicer.util import VTKObservationMixin

from LDSegLib import parameters, review, runner, sceneio, segment, training
from LDSegLib.parameters import segmentSettings
from LDSegLib.runner import RunState

POLL_MS = 100


def _installTorch(specifier):
    try:
        import PyTorchUtils
    except ImportError:
        return None
    return PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False, torchVersionRequirement=specifier)


def _hasPyTorchExtension():
    try:
        import PyTorchUtils  # noqa: F401

        return True
    except ImportError:
        return False


class LDSegWidgetBase(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The module widget; ``LDSeg.py`` subclasses it as ``LDSegWidget`` and provides the logic."""

    def createLogic(self):
        raise NotImplementedError  # LDSeg.py: LDSegLogic()

    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self.job = None
        self.trainingJob = None
        self.resegmentJob = None
        self.trainingCandidates = []
        self.navigator = review.UncertainRegionNavigator()
        self.dependencyReport = None
        self._loggedEpochs = 0
        self._samplesOf = None  # ID of the segmentation whose classes the frequency list holds
        self._observedBrowser = None  # the samples browser followed (Slicer's Sequences toolbar steps it too)

    # -- set-up
    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/LDSeg.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = self.createLogic()

        self.timer = qt.QTimer()
        self.timer.setInterval(POLL_MS)
        self.timer.connect("timeout()", self.onTimer)
        import ctk

        self.ui.trainingFolderEdit.filters = ctk.ctkPathLineEdit.Dirs
        self.ui.reviewTable.setColumnCount(len(review.TABLE_HEADER))
        self.ui.reviewTable.setHorizontalHeaderLabels(review.TABLE_HEADER)
        self.ui.userModelFolderLabel.text = segment.userModelDir()

        self.ui.segmentButton.connect("clicked(bool)", self.onSegmentButton)
        self.ui.refreshModelsButton.connect("clicked(bool)", lambda: self.refreshModels())
        self.ui.modelCardButton.connect("clicked(bool)", self.onModelCard)
        self.ui.modelSelector.connect("currentIndexChanged(int)", self.onModelChanged)
        self.ui.refreshReviewButton.connect("clicked(bool)", self.updateReview)
        self.ui.nextRegionButton.connect("clicked(bool)", lambda: self.onRegion(+1))
        self.ui.previousRegionButton.connect("clicked(bool)", lambda: self.onRegion(-1))
        self.ui.createUncertainSegmentButton.connect("clicked(bool)", self.onCreateUncertainSegment)
        self.ui.frequencyClassComboBox.connect("currentIndexChanged(int)", lambda index: self.updateSamples())
        self.ui.addCaseButton.connect("clicked(bool)", self.onAddCase)
        self.ui.refreshCasesButton.connect("clicked(bool)", self.refreshTrainingCases)
        self.ui.fineTuneButton.connect("clicked(bool)", self.onFineTuneButton)
        self.ui.checkDependenciesButton.connect("clicked(bool)", self.onCheckDependencies)
        self.ui.trainingCasesList.connect("itemChanged(QListWidgetItem*)", lambda item: self.onParameterChanged())

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.initializeParameterNode()
        self.refreshModels()  # in-process, headers only: quick, and no torch needed

    def cleanup(self):
        for job in (self.job, self.trainingJob, self.resegmentJob):
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
        for job in (self.job, self.resegmentJob):
            if job is not None and job.state == RunState.RUNNING:
                job.cancel(wait=True)
        self.followSampleBrowser(None)
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    # -- parameter node
    def initializeParameterNode(self):
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            self._parameterNode.inputVolume = self.logic.defaultInputVolume()

    def setParameterNode(self, parameterNode):
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.onParameterChanged)
        self._parameterNode = parameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)  # restores the folder too
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.onParameterChanged)
            self.onParameterChanged()

    def onParameterChanged(self, caller=None, event=None):
        p = self._parameterNode
        if p is None:
            return
        model = self.currentModel()
        if not (self.job is not None and self.job.busy):
            # enabled without PyTorch: the click offers to install it
            self.ui.segmentButton.enabled = bool(p.inputVolume and model and not model.error)
        self.ui.roiSelector.enabled = p.useRoi
        if p.uncertainty:
            sceneio.setOverlayOpacity(slicer.mrmlScene, p.uncertainty, p.sdOpacity)
            sceneio.setOverlayThreshold(p.uncertainty, p.sdThreshold)
        self.updateSamples()
        self.ui.addCaseButton.enabled = bool(p.segmentation and model and not model.error)
        if not (self.trainingJob is not None and self.trainingJob.busy):
            folder, names = self.logic.correctedCases(model)
            self.ui.fineTuneButton.enabled = (
                bool(model)
                and bool(names or self.checkedTrainingCases() or parameters.folderText(p.trainingFolder))
                and bool(p.epochs or p.timeBudget)  # no epoch limit needs a time budget
            )

    # -- models
    def currentModel(self):
        index = self.ui.modelSelector.currentIndex
        models = self.logic.models if self.logic else []
        return models[index] if 0 <= index < len(models) else None

    def refreshModels(self, select=None):
        models = self.logic.refreshModels()
        wanted = select or (self._parameterNode.model if self._parameterNode else "")
        self.ui.modelSelector.blockSignals(True)
        self.ui.modelSelector.clear()
        for model in models:
            self.ui.modelSelector.addItem(model.label, model.path)
        paths = [m.path for m in models]
        self.ui.modelSelector.setCurrentIndex(paths.index(wanted) if wanted in paths else (0 if paths else -1))
        self.ui.modelSelector.blockSignals(False)
        self.onModelChanged()

    def onModelChanged(self, index=None):
        model = self.currentModel()
        if model:
            self.ui.modelInfoLabel.text = model.summary()
        elif self.logic.modelListError:
            self.ui.modelInfoLabel.text = _("Could not list the models: ") + self.logic.modelListError
        else:
            self.ui.modelInfoLabel.text = _("No model found. Reinstall LDSeg or fine-tune one.")
        self.ui.modelCardButton.enabled = bool(model and model.card)
        if self._parameterNode is not None:
            self._parameterNode.model = model.path if model else ""
        self.updateCorrectedCases()
        self.onParameterChanged()

    def onModelCard(self):
        model = self.currentModel()
        if not (model and model.card):
            return
        with open(model.card, encoding="utf-8") as f:
            text = f.read()
        dialog = qt.QDialog(slicer.util.mainWindow())
        dialog.setWindowTitle(_("Model card: {title}").format(title=model.label))
        layout = qt.QVBoxLayout(dialog)
        browser = qt.QTextBrowser()
        browser.setOpenExternalLinks(True)
        browser.setSearchPaths([os.path.dirname(model.card)])
        if hasattr(browser, "setMarkdown"):
            browser.setMarkdown(text)
        else:
            browser.setPlainText(text)
        layout.addWidget(browser)
        dialog.resize(760, 640)
        dialog.exec_()

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
            job = self.logic.segmentationJob(
                p.inputVolume, segmentSettings(p), self.currentModel(), roiNode=p.roi if p.useRoi else None
            )
            try:
                job.start()
            except Exception:
                self.ui.statusLabel.text = job.message  # "Failed: ...", and no timer for this job
                raise
            self.job = job
            self.ui.segmentButton.text = _("Cancel")
            self.ui.deviceUsedLabel.text = "-"
            self.ui.cpuWarningLabel.visible = False
            self.timer.start()

    def checkDependenciesOnce(self):
        """True when the engine can run; otherwise offers the install (with consent) first."""
        if self.dependencyReport is None or not self.dependencyReport.ok:
            self.updateDependencies()
        if self.dependencyReport.blocking:
            slicer.util.errorDisplay(self.dependencyReport.blocking)
            return False
        if self.dependencyReport.mismatch:
            slicer.util.warningDisplay(self.dependencyReport.mismatch)
        return True

    def updateDependencies(self):
        installTorch = _installTorch if _hasPyTorchExtension() else None
        self.dependencyReport = self.logic.ensureDependencies(
            slicer.util.confirmOkCancelDisplay, slicer.util.pip_install, installTorch=installTorch
        )
        self.ui.dependencyStatusLabel.text = self.dependencyReport.describe()
        self.refreshModels()  # the list after an install (another engine may list more)

    def onTimer(self):
        ended, busy = runner.pollJobs([self.job, self.trainingJob, self.resegmentJob])
        if self.job is not None and (self.job.busy or self.job in ended):
            self.updateRunDisplay()
        if self.trainingJob is not None and (self.trainingJob.busy or self.trainingJob in ended):
            self.updateTrainingDisplay()
        if self.resegmentJob is not None and self.resegmentJob.busy:
            self.ui.changeLabel.text = (
                _("Segmenting your corrected case with the new model: ") + self.resegmentJob.message
            )
        for job in ended:
            if job is self.job:
                self.onSegmentationFinished()
            elif job is self.trainingJob:
                self.onTrainingFinished()
            elif job is self.resegmentJob:
                self.onResegmentationFinished()
        if not busy and not any(j is not None and j.busy for j in (self.job, self.trainingJob, self.resegmentJob)):
            self.timer.stop()

    def updateRunDisplay(self):
        job = self.job
        self.ui.progressBar.value = int(round(100 * job.fraction))
        remaining = job.remainingEstimate()
        suffix = _(" (about {seconds} s left)").format(seconds=f"{remaining:.0f}") if remaining is not None else ""
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
            self.logic.segmentationDone(job)
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

    def updateSamples(self):
        """The samples controls follow the selected result: enabled only when it has samples."""
        p = self._parameterNode
        if p is None:
            return
        count = self.logic.sampleCount(p.segmentation)
        for widget in (
            self.ui.showSampleCheckBox,
            self.ui.sampleSlider,
            self.ui.sampleSpinBox,
            self.ui.showFrequencyCheckBox,
            self.ui.frequencyClassComboBox,
        ):
            widget.enabled = count > 0
        self.ui.sampleSlider.maximum = max(count, 1)
        self.ui.sampleSpinBox.maximum = max(count, 1)
        self.ui.sampleSpinBox.suffix = _(" of {count}").format(count=count) if count else ""
        self.followSampleBrowser(self.logic.sampleBrowser(p.segmentation))
        segmentationId = p.segmentation.GetID() if p.segmentation else None
        combo = self.ui.frequencyClassComboBox
        if segmentationId != self._samplesOf:
            self._samplesOf = segmentationId
            combo.blockSignals(True)
            combo.clear()
            for c in self.logic.sampleClasses(p.segmentation):
                combo.addItem(str(c["name"]), int(c["label_value"]))
            combo.blockSignals(False)
        labelValue = combo.itemData(combo.currentIndex) if combo.currentIndex >= 0 else None
        with slicer.util.tryWithErrorDisplay(_("Could not show the samples."), waitCursor=True):
            self.ui.samplesLabel.text = self.logic.updateSamplesView(
                p.segmentation, p.showSample, p.sampleNumber, p.showFrequency, labelValue, p.sdOpacity
            )

    def followSampleBrowser(self, browser):
        if browser is self._observedBrowser:
            return
        if self._observedBrowser is not None:
            self.removeObserver(self._observedBrowser, vtk.vtkCommand.ModifiedEvent, self.onSampleBrowserModified)
        self._observedBrowser = browser
        if browser is not None:
            self.addObserver(browser, vtk.vtkCommand.ModifiedEvent, self.onSampleBrowserModified)

    def onSampleBrowserModified(self, caller=None, event=None):
        p = self._parameterNode
        number = self.logic.shownSample(p.segmentation) if p is not None else 0
        if number and number != p.sampleNumber:
            p.sampleNumber = number  # stepped in Slicer's Sequences toolbar: the spin box follows

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

    def onAddCase(self):
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("Could not add the corrected case."), waitCursor=True):
            source = self.logic.addCorrectedCase(p.segmentation, self.currentModel())
            edited = source.get("corrected_voxels")
            text = _("Added '{case}' to the fine-tuning cases.").format(case=source["case"])
            if edited is not None:
                text += " " + _("You changed {count} voxels of the engine's result.").format(count=edited)
            self.ui.regionLabel.text = text
            self.updateCorrectedCases()
            self.onParameterChanged()

    # -- fine-tune
    def updateCorrectedCases(self):
        folder, names = self.logic.correctedCases(self.currentModel())
        self.ui.correctedCasesLabel.text = (
            _("{count} case(s) in {folder}").format(count=len(names), folder=folder)
            if names
            else _("None yet: correct a result, then use 'Add ... to the fine-tuning cases' above.")
        )

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

    def onFineTuneButton(self):
        if self.trainingJob is not None and self.trainingJob.state == RunState.RUNNING:
            self.trainingJob.cancel()
            return
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("Could not start fine-tuning."), waitCursor=True):
            if not self.checkDependenciesOnce():
                return
            job = self.logic.trainingJob(
                self.currentModel(),
                sceneCases=self.checkedTrainingCases(),
                folder=parameters.folderText(p.trainingFolder),
                epochs=p.epochs,
                learningRate=p.learningRate,
                device=p.device,
                timeBudget=p.timeBudget,
            )
            try:
                job.start()
            except Exception:
                self.ui.trainingStatusLabel.text = job.message
                raise
            self.trainingJob = job
            self._loggedEpochs = 0
            self.ui.trainingLog.clear()
            self.ui.changeLabel.text = ""
            self.ui.fineTuneButton.text = _("Cancel fine-tuning")
            self.timer.start()

    def updateTrainingDisplay(self):
        job = self.trainingJob
        self.ui.trainingProgressBar.value = int(round(100 * job.fraction))
        self.ui.trainingStatusLabel.text = job.liveText() if job.state == RunState.RUNNING else job.message
        for record in job.history[self._loggedEpochs :]:
            self.ui.trainingLog.appendPlainText(
                f"epoch {record.counter}  loss {record.loss:.4f}  val Dice {record.valDice:.3f}"
            )
        self._loggedEpochs = len(job.history)

    def onTrainingFinished(self):
        job = self.trainingJob
        self.ui.fineTuneButton.text = _("Fine-tune")
        self.updateTrainingDisplay()
        if job.succeeded:
            newModel = self.logic.trainingDone(job)
            self.refreshModels(select=job.result)
            self.startResegmentation(newModel)
        elif job.state == RunState.FAILED:
            slicer.util.errorDisplay(_("Fine-tuning failed: ") + job.error, detailedText="\n".join(job.log[-40:]))
        self.onParameterChanged()

    def startResegmentation(self, newModel):
        """Segment the corrected case again with the fine-tuned model, to show what changed."""
        with slicer.util.tryWithErrorDisplay(_("Could not segment the corrected case again."), waitCursor=True):
            job = self.logic.resegmentationJob(newModel, segmentSettings(self._parameterNode))
            if job is None:
                self.ui.changeLabel.text = _("The new model is selected.")
                return
            job.start()
            self.resegmentJob = job
            self.timer.start()

    def onResegmentationFinished(self):
        job = self.resegmentJob
        if job.succeeded:
            self.logic.segmentationDone(job)
            self._parameterNode.segmentation = job.result.segmentationNode
            self._parameterNode.uncertainty = job.result.uncertaintyVolumeNode
            self.ui.changeLabel.text = self.logic.describeResegmentation(job)
            self.updateReview()
        else:
            self.ui.changeLabel.text = job.message

    # -- settings
    def onCheckDependencies(self):
        with slicer.util.tryWithErrorDisplay(_("Could not install the dependencies."), waitCursor=True):
            self.updateDependencies()
