"""One segmentation run: the input (or its ROI) out to the engine, the result back into the scene."""

import dataclasses
import os

from . import runner, sceneio
from .models import ModelInfo, listModels  # noqa: F401 -- the model list lives in .models; kept importable here

DEVICES = ("auto", "cuda", "cpu")

CPU_WARNING = (
    "Running on the CPU: no usable GPU was found (or CPU was chosen). Expect minutes for a 3D "
    "volume; fewer samples make it faster."
)


@dataclasses.dataclass
class SegmentSettings:
    model: str = ""  # model file path or name ("" = the engine's default model)
    device: str = "auto"  # auto / cuda / cpu
    steps: int = 0  # sampling steps K (0 = the model's own)
    samples: int = 10  # N samples for the uncertainty
    seed: int = 0
    probabilities: bool = False  # also add the mean foreground probability volume
    saveSamples: bool = False  # keep every sample's label map (review: step through them, class frequency)
    sdThreshold: float = 0.1
    sdOpacity: float = 0.6

    def engineArguments(self, inputPath, outputDir):
        if self.device not in DEVICES:
            raise ValueError(f"Unknown device {self.device!r}; choose one of {', '.join(DEVICES)}.")
        if self.samples < 1:
            raise ValueError("The number of samples must be at least 1.")
        args = [
            "segment",
            str(inputPath),
            "-o",
            str(outputDir),
            "--samples",
            str(int(self.samples)),
            "--seed",
            str(int(self.seed)),
            "--device",
            self.device,
            "--format",
            "nrrd",
            "--probabilities" if self.probabilities else "--no-probabilities",
            "--progress",
            "json",
        ]
        if self.model:
            args += ["--model", str(self.model)]
        if self.steps:
            args += ["--steps", str(int(self.steps))]
        if self.saveSamples:
            args.append("--save-samples")
        return args


def userModelDir(environ=None):
    """The engine's user model folder ($LDSEG_HOME/models or ~/.ldseg/models) without importing the engine."""
    environ = os.environ if environ is None else environ
    home = environ.get("LDSEG_HOME")
    return os.path.join(home if home else os.path.join(os.path.expanduser("~"), ".ldseg"), "models")


def checkInputAgainstModel(volumeNode, model):
    """A one-line problem when the volume cannot go to this model (None when fine)."""
    if model is None or not model.dims:
        return None
    components = volumeNode.GetImageData().GetNumberOfScalarComponents() if volumeNode.GetImageData() else 0
    if components == 0:
        return f"The volume '{volumeNode.GetName()}' has no voxels."
    if model.channels != components:
        kind = "an RGB" if model.channels == 3 else "a single-channel (grayscale)"
        return f"The model '{model.label}' needs {kind} image; '{volumeNode.GetName()}' has {components} component(s)."
    return None


class SegmentationJob(runner.EngineJob):
    """Segment ``inputVolumeNode`` (within ``roiNode`` if given); the result joins the scene only at the end."""

    stages = runner.SEGMENT_STAGES

    def __init__(self, scene, inputVolumeNode, settings, roiNode=None, modelTitle=None, terminology=None, **kwargs):
        super().__init__(**kwargs)
        self.scene = scene
        self.inputVolumeNode = inputVolumeNode
        self.settings = settings
        self.roiNode = roiNode
        self.modelTitle = modelTitle
        self.terminology = terminology or {}  # {class name: entry}, set on the segments
        self.extent = None
        self.outputDir = None
        self.resultJson = None

    def prepare(self, workDir):
        sceneio.checkTransformable(self.inputVolumeNode)
        sceneio.checkOrthogonalGrid(self.inputVolumeNode)
        self.extent = (
            sceneio.roiExtent(self.inputVolumeNode, self.roiNode)
            if self.roiNode is not None
            else sceneio.fullExtent(self.inputVolumeNode)
        )
        inputPath = os.path.join(workDir, "input.nrrd")
        sceneio.writeVolumeForEngine(self.inputVolumeNode, inputPath, self.extent)
        self.outputDir = os.path.join(workDir, "output")
        return self.settings.engineArguments(inputPath, self.outputDir)

    def importResults(self):
        if self.scene.GetNodeByID(self.inputVolumeNode.GetID()) is not self.inputVolumeNode:
            raise RuntimeError("The input volume was removed from the scene during the run.")
        path = os.path.join(self.outputDir, "input_result.json")
        for event in reversed(self.events):
            if event.stage == "done" and event.extra.get("result"):
                path = event.extra["result"]
                break
        self.resultJson = sceneio.readResultJson(path)
        return sceneio.importResults(
            self.scene,
            self.inputVolumeNode,
            self.resultJson,
            extent=self.extent,
            baseDir=self.outputDir,
            sdThreshold=self.settings.sdThreshold,
            sdOpacity=self.settings.sdOpacity,
            withProbability=self.settings.probabilities,
            modelTitle=self.modelTitle,
            terminology=self.terminology,
        )

    @property
    def deviceUsed(self):
        if self.resultJson and self.resultJson.get("device"):
            return str(self.resultJson["device"])
        return self.deviceMessage

    @property
    def onCpu(self):
        device = self.deviceUsed.lower()
        return device.startswith("cpu") or "cpu run" in device

    def doneMessage(self):
        samples = self.resultJson.get("samples") if self.resultJson else None
        return f"Done in {self.seconds:.1f} s on {self.deviceUsed or 'the engine'} ({samples} samples)."
