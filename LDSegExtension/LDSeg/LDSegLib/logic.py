"""The module's logic without Qt: models, runs, corrected cases, the fine-tune loop, dependencies.

``LDSeg.py`` combines :class:`ModuleLogic` with Slicer's ``ScriptedLoadableModuleLogic``; the
widget only turns clicks into calls here and shows what comes back. Tests drive the same object
on slicer-core's real MRML scene.
"""

import collections
import os

import slicer

from . import cases, dependencies, models, runner, samples, sceneio, segment, training

#: How many engine results' label maps are kept in memory (to say what a correction changed).
KEPT_RESULTS = 4


class ModuleLogic:
    def __init__(self, scene=None, python=None, env=None, listFunction=None):
        self._scene = scene
        self.python = python
        self.env = env
        self.listFunction = listFunction  # stands in for the engine's list_models (tests)
        self.models = []
        self.modelListError = ""
        self._engineLabels = collections.OrderedDict()  # segmentation node ID -> engine label map
        self.lastCase = None  # the corrected case added last: dict(volume, segmentation, folder, case, ...)

    @property
    def scene(self):
        return self._scene if self._scene is not None else slicer.mrmlScene

    def _python(self):
        return self.python or runner.pythonExecutable()

    # -- models
    def refreshModels(self):
        """Re-read the model list in-process (headers only, no torch). Never raises: a failure
        leaves an empty list and ``modelListError`` saying why."""
        try:
            self.models = models.listModels(self.listFunction)
            self.modelListError = ""
        except Exception as e:  # noqa: BLE001 -- shown in the panel
            self.models = []
            self.modelListError = str(e) or e.__class__.__name__
        return self.models

    def modelByPath(self, path):
        return next((m for m in self.models if m.path == path), None)

    def defaultInputVolume(self):
        """The first volume a model can take (scalar or RGB, not a label map), or None."""
        scene = self.scene
        for n in range(scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")):
            node = scene.GetNthNodeByClass(n, "vtkMRMLScalarVolumeNode")
            if not node.IsA("vtkMRMLLabelMapVolumeNode") and node.GetID() not in self._resultVolumeIds():
                return node
        return None

    def _resultVolumeIds(self):
        out = set()
        scene = self.scene
        for n in range(scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode")):
            seg = scene.GetNthNodeByClass(n, "vtkMRMLSegmentationNode")
            for role in (sceneio.REF_UNCERTAINTY, sceneio.REF_PROBABILITY):
                node = seg.GetNodeReference(role)
                if node is not None:
                    out.add(node.GetID())
        return out | samples.resultNodes(scene)

    # -- segmentation
    def segmentationJob(self, volumeNode, settings, model=None, roiNode=None):
        """A run of ``model`` (a :class:`models.ModelInfo`) on the volume; start it with ``start()``."""
        if model is not None:
            problem = segment.checkInputAgainstModel(volumeNode, model)
            if problem:
                raise ValueError(problem)
        return segment.SegmentationJob(
            self.scene,
            volumeNode,
            settings,
            roiNode=roiNode,
            modelTitle=model.label if model else None,
            terminology=model.terminologyByName() if model else None,
            python=self._python(),
            env=self.env,
        )

    def segmentationDone(self, job):
        """Remember the engine's label map of a finished run (to measure the user's corrections)."""
        if job.succeeded and job.result is not None and job.result.labels is not None:
            self._engineLabels[job.result.segmentationNode.GetID()] = job.result.labels
            while len(self._engineLabels) > KEPT_RESULTS:
                self._engineLabels.popitem(last=False)

    def engineLabels(self, segmentationNode):
        return self._engineLabels.get(segmentationNode.GetID()) if segmentationNode is not None else None

    # -- the samples of a result (made with "Keep individual samples")
    def sampleCount(self, segmentationNode):
        return samples.sampleCount(segmentationNode)

    def sampleClasses(self, segmentationNode):
        return samples.sampleClasses(segmentationNode)

    def sampleBrowser(self, segmentationNode):
        return samples.sampleBrowser(segmentationNode)

    def shownSample(self, segmentationNode):
        return samples.shownSample(segmentationNode)

    def updateSamplesView(self, segmentationNode, showSample, sampleNumber, showFrequency, labelValue, opacity):
        """Show or hide sample ``sampleNumber`` and the frequency of class ``labelValue`` as the panel asks;
        returns a line describing what shows. Other results' samples leave the views (one result's at a time)."""
        samples.hideOtherResults(self.scene, segmentationNode)
        if not samples.sampleCount(segmentationNode):
            return samples.describeSamples(segmentationNode)
        count = samples.sampleCount(segmentationNode)
        number = min(max(int(sampleNumber), 1), count)
        if showSample:
            samples.showSample(segmentationNode, number)
        else:
            samples.hideSample(segmentationNode)
        if showFrequency and labelValue is not None:
            samples.showFrequency(segmentationNode, labelValue, opacity)
        else:
            samples.hideFrequency(segmentationNode, opacity)
        shown = []
        if showSample:
            shown.append(f"sample {number} of {count} as outlines")
        if showFrequency and labelValue is not None:
            name = {int(c["label_value"]): c["name"] for c in samples.sampleClasses(segmentationNode)}[int(labelValue)]
            shown.append(f"how often each voxel is '{name}' (0 to 1 over {count} samples)")
        return ("Showing " + " and ".join(shown) + ".") if shown else samples.describeSamples(segmentationNode)

    # -- the loop: corrected cases, fine-tuning, re-segmentation
    def caseVolume(self, segmentationNode):
        """The volume a segmentation was made on (the LDSeg input, else its reference geometry)."""
        pairs = {s.GetID(): v for s, v in training.sceneTrainingCandidates(self.scene)}
        return pairs.get(segmentationNode.GetID())

    def addCorrectedCase(self, segmentationNode, model, volumeNode=None):
        """Add the volume and its (corrected) segmentation to ``model``'s fine-tuning cases."""
        if segmentationNode is None:
            raise ValueError("Select the corrected segmentation first.")
        if model is None:
            raise ValueError("Select the model the case is for.")
        volumeNode = volumeNode or self.caseVolume(segmentationNode)
        if volumeNode is None:
            raise ValueError(f"'{segmentationNode.GetName()}' has no volume it was made on.")
        folder = cases.casesFolder(model, self.env)
        source = cases.addCase(
            segmentationNode, volumeNode, model, folder, engineLabels=self.engineLabels(segmentationNode)
        )
        self.lastCase = {
            "volume": volumeNode,
            "segmentation": segmentationNode,
            "folder": folder,
            "case": source["case"],
            "engineLabels": self.engineLabels(segmentationNode),
        }
        return source

    def correctedCases(self, model):
        """(folder, case names) of ``model``'s task."""
        if model is None:
            return "", []
        folder = cases.casesFolder(model, self.env)
        return folder, cases.listCases(folder)

    def trainingJob(
        self, model, sceneCases=(), folder="", epochs=20, learningRate=1e-4, device="auto", timeBudget=0, **kwargs
    ):
        """Fine-tune ``model`` on its corrected cases, the chosen scene cases and a folder."""
        if model is None:
            raise ValueError("Select the model to fine-tune.")
        correctedFolder, names = self.correctedCases(model)
        folders = ([correctedFolder] if names else []) + ([folder] if folder else [])
        if not folders and not sceneCases:
            raise ValueError("No labeled cases: add a corrected case, check scene cases, or choose a folder.")
        outputPath = kwargs.pop("outputPath", None) or training.newModelPath(model, self.env)
        return training.TrainingJob(
            model,
            sceneCases=sceneCases,
            folder=folders,
            epochs=epochs,
            learningRate=learningRate,
            device=device,
            timeBudget=timeBudget,
            outputPath=outputPath,
            python=self._python(),
            env=self.env,
            **kwargs,
        )

    def trainingDone(self, job):
        """After a successful fine-tune: the list re-read; returns the new model (or None)."""
        if not job.succeeded:
            return None
        self.refreshModels()
        return self.modelByPath(job.result)

    def resegmentationJob(self, model, settings):
        """A run of the new model on the corrected case added last (None if its volume left the scene)."""
        case = self.lastCase
        if not case or model is None:
            return None
        volume = case["volume"]
        if self.scene.GetNodeByID(volume.GetID()) is not volume:
            return None
        job = self.segmentationJob(volume, settings, model)
        job.case = case
        return job

    def describeResegmentation(self, job):
        """How much the new model's result changed, and its agreement with the correction."""
        case = getattr(job, "case", None)
        if case is None or not job.succeeded:
            return ""
        corrected, _ = sceneio.alignToGrid(
            *sceneio.readVolumeFile(os.path.join(case["folder"], "labels", case["case"] + ".nrrd")),
            sceneio.ijkToRasArray(case["volume"]),
        )
        new = sceneio.exportLabelValues(job.result.segmentationNode, case["volume"])
        return cases.describeChange(case["engineLabels"], corrected, new, job.result.classes)

    # -- dependencies
    def checkDependencies(self):
        return dependencies.checkDependencies()

    def ensureDependencies(self, confirm, pipInstall, installTorch=None):
        """Check; offer to install what is missing (``confirm(text)`` first). Returns the new report;
        the model list is re-read after an install (a new engine may list other models)."""
        report = dependencies.checkDependencies()
        if report.toInstall:
            if dependencies.installMissing(report, confirm, pipInstall, installTorch=installTorch):
                report = dependencies.checkDependencies()
                self.refreshModels()
        return report
