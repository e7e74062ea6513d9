"""Fine-tuning: labeled cases from the scene and/or a folder → ``ldseg train --init MODEL``.

The new model is written into the user's model folder, so ``ldseg models`` (and
the module's model list) shows it as soon as the run ends.
"""

import dataclasses
import datetime
import os
import re

import slicer

from . import runner, sceneio
from .review import TAG_UNCERTAIN
from .segment import userModelDir

IMAGE_EXTENSIONS = (".nrrd", ".nii.gz", ".nii", ".mha", ".mhd", ".png", ".tif", ".tiff")


@dataclasses.dataclass
class EpochRecord:
    epoch: int
    epochs: int  # 0: no epoch limit (the time budget ends training)
    loss: float
    valDice: float

    @property
    def counter(self):
        return f"{self.epoch}/{self.epochs}" if self.epochs else str(self.epoch)


def _stem(name):
    for ext in IMAGE_EXTENSIONS:
        if name.lower().endswith(ext):
            return name[: -len(ext)], name[-len(ext) :]
    return os.path.splitext(name)


def safeName(text):
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "case"


def sceneTrainingCandidates(scene):
    """(segmentationNode, volumeNode) pairs: each segmentation with the volume it was made on."""
    pairs = []
    role = slicer.vtkMRMLSegmentationNode.GetReferenceImageGeometryReferenceRole()
    for n in range(scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode")):
        segmentationNode = scene.GetNthNodeByClass(n, "vtkMRMLSegmentationNode")
        volumeNode = segmentationNode.GetNodeReference(sceneio.REF_INPUT) or segmentationNode.GetNodeReference(role)
        if (
            volumeNode is not None
            and volumeNode.IsA("vtkMRMLScalarVolumeNode")
            and not volumeNode.IsA("vtkMRMLLabelMapVolumeNode")
        ):
            pairs.append((segmentationNode, volumeNode))
    return pairs


def folderPairs(folder):
    """(image, label) file pairs of a folder with images/NAME.ext and labels/NAME.ext."""
    images, labels = os.path.join(folder, "images"), os.path.join(folder, "labels")
    if not (os.path.isdir(images) and os.path.isdir(labels)):
        raise ValueError(f"{folder} needs the subfolders images/ and labels/ (same file names in both).")
    byStem = {_stem(f)[0]: f for f in os.listdir(labels)}
    pairs = []
    for f in sorted(os.listdir(images)):
        stem = _stem(f)[0]
        if stem in byStem:
            pairs.append((os.path.join(images, f), os.path.join(labels, byStem[stem])))
    if not pairs:
        raise ValueError(f"{folder}: no image in images/ has a label file of the same name in labels/.")
    return pairs


def exportSceneCase(segmentationNode, volumeNode, classes, imagePath, labelPath):
    """Write one labeled case: the volume, and its segments as the model's label values (by class name)."""
    segmentation = segmentationNode.GetSegmentation()
    byName = {str(c["name"]).lower(): c for c in classes}
    ids, unknown = [], []
    for n in range(segmentation.GetNumberOfSegments()):
        segment = segmentation.GetNthSegment(n)
        if segment.HasTag(TAG_UNCERTAIN):
            continue
        if segment.GetName().lower() in byName:
            ids.append(segmentation.GetNthSegmentID(n))
        else:
            unknown.append(segment.GetName())
    if unknown:
        raise ValueError(
            f"'{segmentationNode.GetName()}' has segments the model does not know: "
            f"{', '.join(unknown)}. Rename them to one of: "
            f"{', '.join(str(c['name']) for c in classes if int(c['label_value']) != 0)}."
        )
    if not ids:
        raise ValueError(f"'{segmentationNode.GetName()}' has no segment named like the model's classes.")
    scene = segmentationNode.GetScene()
    table = sceneio.classColorTable(scene, classes, "LDSeg training classes (temporary)")
    try:
        labels = sceneio.exportLabelValues(segmentationNode, volumeNode, table, segmentIds=set(ids))
    finally:
        scene.RemoveNode(table)
    sceneio.writeVolumeForEngine(volumeNode, imagePath)
    labelNode = slicer.vtkMRMLLabelMapVolumeNode()
    sceneio.setIjkToRasArray(labelNode, sceneio.ijkToRasArray(volumeNode))
    labelNode.SetAndObserveImageData(sceneio.imageFromArray(labels))
    sceneio.writeVolumeNode(labelNode, labelPath)
    return labels


def prepareDataset(datasetDir, sceneCases, folder, classes):
    """Fill ``datasetDir`` with images/ and labels/ from scene pairs and folders; returns the case count.

    ``folder``: one folder of images/ + labels/, or a list of them (the corrected cases, the user's own).
    """
    images, labels = os.path.join(datasetDir, "images"), os.path.join(datasetDir, "labels")
    os.makedirs(images, exist_ok=True)
    os.makedirs(labels, exist_ok=True)
    count = 0
    used = set()
    for segmentationNode, volumeNode in sceneCases:
        name = safeName(segmentationNode.GetName())
        while name in used:
            name += "_"
        used.add(name)
        exportSceneCase(
            segmentationNode,
            volumeNode,
            classes,
            os.path.join(images, name + ".nrrd"),
            os.path.join(labels, name + ".nrrd"),
        )
        count += 1
    folders = [folder] if isinstance(folder, str) else list(folder or ())
    for n, one in enumerate(f for f in folders if f):
        for imagePath, labelPath in folderPairs(one):
            stem, ext = _stem(os.path.basename(imagePath))
            labelExt = _stem(os.path.basename(labelPath))[1]
            name = f"folder{n}_" + safeName(stem) if n else "folder_" + safeName(stem)
            _linkOrCopy(imagePath, os.path.join(images, name + ext))
            _linkOrCopy(labelPath, os.path.join(labels, name + labelExt))
            count += 1
    if count < 1:
        raise ValueError("Fine-tuning needs at least one labeled case.")
    return count


def _linkOrCopy(source, target):
    try:
        os.symlink(os.path.abspath(source), target)
    except (OSError, NotImplementedError):
        import shutil

        shutil.copyfile(source, target)


def newModelPath(baseModel, environ=None, now=None):
    now = now or datetime.datetime.now()
    folder = userModelDir(environ)
    base = safeName(baseModel.name or "model")
    return os.path.join(folder, f"{base}-finetuned-{now:%Y%m%d-%H%M%S}.safetensors")


class TrainingJob(runner.EngineJob):
    """Fine-tune ``baseModel`` on the cases; the new model lands in the user's model folder."""

    stages = runner.TRAIN_STAGES

    def __init__(
        self,
        baseModel,
        sceneCases=(),
        folder="",
        epochs=20,
        learningRate=1e-4,
        device="auto",
        outputPath=None,
        validationFraction=0.2,
        seed=0,
        title=None,
        timeBudget=0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.baseModel = baseModel
        self.sceneCases = list(sceneCases)
        self.folder = folder
        self.epochs = max(0, int(epochs))  # 0: as many as the time budget allows
        self.learningRate = float(learningRate)
        self.device = device
        self.outputPath = outputPath or newModelPath(baseModel)
        self.validationFraction = validationFraction
        self.seed = seed
        self.title = title
        self.timeBudget = int(timeBudget or 0)  # minutes; 0 = epochs only
        self.history = []
        self.cases = 0

    def prepare(self, workDir):
        if not self.epochs and not self.timeBudget:
            raise ValueError("Choose a number of epochs, or a time budget to train for.")
        if not self.baseModel.classes:
            raise ValueError(f"The model '{self.baseModel.label}' lists no classes.")
        dataset = os.path.join(workDir, "dataset")
        self.cases = prepareDataset(dataset, self.sceneCases, self.folder, self.baseModel.classes)
        os.makedirs(os.path.dirname(self.outputPath), exist_ok=True)
        if os.path.exists(self.outputPath):
            raise ValueError(f"{self.outputPath} exists already.")
        name = os.path.splitext(os.path.basename(self.outputPath))[0]
        title = self.title or f"{self.baseModel.title or self.baseModel.name} (fine-tuned {datetime.date.today()})"
        # one case: no validation split (the engine then keeps the last epoch)
        valFraction = 0.0 if self.cases == 1 else max(self.validationFraction, 1.0 / self.cases)
        budget = []
        if self.timeBudget:
            if not runner.engineTrainOption("time_budget"):
                raise ValueError(
                    "This LDSeg engine has no training time budget yet: set the time budget to 0 and choose epochs."
                )
            budget = ["--time-budget", str(self.timeBudget)]
        # without --epochs the engine trains for the whole budget
        epochs = ["--epochs", str(self.epochs)] if self.epochs else []
        return [
            "train",
            dataset,
            "-o",
            self.outputPath,
            "--init",
            self.baseModel.path,
            *epochs,
            "--lr",
            repr(self.learningRate),
            "--device",
            self.device,
            "--val-fraction",
            f"{valFraction:.4f}",
            "--seed",
            str(int(self.seed)),
            "--name",
            name,
            "--title",
            title,
            "--run-dir",
            os.path.join(workDir, "run"),
            "--progress",
            "json",
        ] + budget

    def onEvent(self, event):
        if "epoch" in event.extra and "loss" in event.extra:
            self.history.append(
                EpochRecord(
                    int(event.extra["epoch"]),
                    int(event.extra.get("epochs", self.epochs)),
                    float(event.extra["loss"]),
                    float(event.extra.get("val_dice", float("nan"))),
                )
            )

    def liveText(self):
        if not self.history:
            return self.message
        last = self.history[-1]
        best = max((h.valDice for h in self.history if h.valDice == h.valDice), default=float("nan"))
        return f"Epoch {last.counter}: loss {last.loss:.4f}, validation Dice {last.valDice:.3f} (best {best:.3f})"

    def importResults(self):
        if not os.path.isfile(self.outputPath):
            raise RuntimeError(f"The engine reported success but wrote no model at {self.outputPath}.")
        return self.outputPath

    def doneMessage(self):
        return f"New model saved in {self.seconds:.0f} s: {self.outputPath}"
