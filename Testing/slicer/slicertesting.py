"""Shared helpers of the extension's tests (imported by conftest.py and the test files).

Import this before anything imports ``slicer``: slicer-core's "slicer" meta-package extends its
``__path__`` with every "<sys.path entry>/slicer" folder and imports all modules there. With
Testing/ on sys.path (pytest puts it there for Testing/conftest.py) it would import the files of
this folder as slicer.* plugins, so Testing/ is hidden while slicer is first imported.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
MODULE_DIR = REPO / "LDSegExtension" / "LDSeg"
DOCS = REPO / "docs"
DATA = Path(os.environ.get("LDSEG_DATA", REPO.parent / "shared" / "data"))
SAMPLES = DATA / "samples"
HIPPOCAMPUS = DATA / "hippocampus"


def importSlicer():
    """``import slicer`` with Testing/ hidden from the meta-package's plugin search; None if not installed."""
    if "slicer" in sys.modules:
        return sys.modules["slicer"]
    hidden = [p for p in sys.path if p and (Path(p).resolve() / "slicer") == HERE]
    for p in hidden:
        sys.path.remove(p)
    try:
        import slicer
    except ImportError:
        return None
    finally:
        sys.path[0:0] = hidden
    import vtk

    vtk.vtkObject.GlobalWarningDisplayOff()  # the color logic complains that it has no application; harmless
    return slicer


slicer = importSlicer()
if str(MODULE_DIR) not in sys.path:
    sys.path.insert(0, str(MODULE_DIR))


#: Classes of a model with non-contiguous label values, like the prostate phantom's label map.
PROSTATE_CLASSES = [
    {"index": 0, "name": "background", "label_value": 0, "color": [0, 0, 0]},
    {"index": 1, "name": "gland", "label_value": 1, "color": [230, 159, 0]},
    {"index": 2, "name": "peripheral zone", "label_value": 7, "color": [86, 180, 233]},
    {"index": 3, "name": "transition zone", "label_value": 8, "color": [0, 158, 115]},
    {"index": 4, "name": "lesion", "label_value": 9, "color": [213, 94, 0]},
    {"index": 5, "name": "urethra", "label_value": 12, "color": [204, 121, 167]},  # absent from the labels
]


def writeEngineOutputs(
    outDir, inputPath, labels, sd, probabilities=None, classes=PROSTATE_CLASSES, stem="input", samples=None
):
    """Files in the engine's output format (as `ldseg segment` writes them), on the input's geometry.
    ``samples``: (N, k, j, i) label maps, written as the engine's samples file (one component each).

    Written with SimpleITK (LPS) independently of the module's MRML I/O (RAS).
    """
    import SimpleITK as sitk

    reference = sitk.ReadImage(str(inputPath))
    outDir = Path(outDir)
    outDir.mkdir(parents=True, exist_ok=True)
    files = {}
    for key, array in (("labels", labels), ("sd", sd)):
        image = sitk.GetImageFromArray(array)
        image.CopyInformation(reference)
        files[key] = str(outDir / f"{stem}_{key}.nrrd")
        sitk.WriteImage(image, files[key])
    files["probabilities"] = None
    if probabilities is not None:
        image = sitk.GetImageFromArray(probabilities, isVector=True)
        image.CopyInformation(reference)
        files["probabilities"] = str(outDir / f"{stem}_probabilities.nrrd")
        sitk.WriteImage(image, files["probabilities"])
    if samples is not None:
        image = sitk.GetImageFromArray(np.moveaxis(np.asarray(samples), 0, -1), isVector=True)
        image.CopyInformation(reference)
        files["samples"] = str(outDir / f"{stem}_samples.nrrd")
        sitk.WriteImage(image, files["samples"])
    files["preview"] = str(outDir / f"{stem}_preview.png")
    result = {
        "input": str(inputPath),
        "model": "test-model.safetensors",
        "device": "cpu",
        "samples": 8 if samples is None else len(samples),
        "steps": 2,
        "sampler": "ddim",
        "seconds": 0.5,
        "classes": classes,
        "files": files,
    }
    (outDir / f"{stem}_result.json").write_text(json.dumps(result))
    return result


def syntheticSd(shape, seed=0):
    """A smooth SD field in [0, 0.5] with a few hot spots (float32, [k, j, i])."""
    rng = np.random.default_rng(seed)
    k, j, i = np.indices(shape)
    sd = np.zeros(shape, np.float64)
    for _ in range(3):
        ck, cj, ci = (rng.uniform(0, s) for s in shape)
        sd += 0.4 * np.exp(-(((k - ck) / 2.0) ** 2 + ((j - cj) / 8.0) ** 2 + ((i - ci) / 8.0) ** 2))
    return np.clip(sd, 0, 0.5).astype(np.float32)


def engineUnusableReason():
    """Why the real engine cannot run here (None when `ldseg segment` is there)."""
    from LDSegLib import runner

    if runner.enginePackageDir() is None:
        return "the ldseg package is not importable"
    done = subprocess.run([sys.executable, "-m", "ldseg", "segment", "--help"], capture_output=True, text=True)
    if done.returncode != 0:
        return "`ldseg segment` is not available yet: " + (done.stderr.strip().splitlines() or ["?"])[-1]
    return None


def loadVolume(scene, path, labelmap=False, name=None):
    from slicescene import loadVolume as load

    return load(scene, path, labelmap=labelmap, name=name)
