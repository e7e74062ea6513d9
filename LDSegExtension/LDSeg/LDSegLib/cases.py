"""The review -> correct -> fine-tune loop: corrected cases kept as files, and how a result changed.

After Review the user corrects the uncertain regions in Segment Editor, then adds *this volume and
its corrected segmentation* to the model's fine-tuning cases. A case is three files in the user's
model folder::

    <user model folder>/cases/<task>/images/<case>.nrrd    the volume, its own geometry
    <user model folder>/cases/<task>/labels/<case>.nrrd    the segments as the model's label values
    <user model folder>/cases/<task>/sources/<case>.json   where it came from (volume, scene, model, edits)

``<task>`` is the shipped model the chain of fine-tuned models started from, so the cases of a
task add up across fine-tuning rounds. Fine-tune trains on all of them (plus any others chosen);
afterwards the module segments the case again with the new model and reports, per class, how far
the new result moved and how close it is to the correction (:func:`compareLabels`).
"""

import datetime
import json
import os

import numpy as np

from . import MODULE_VERSION, sceneio
from .models import _baseNames
from .segment import userModelDir
from .training import exportSceneCase, safeName


def taskName(model):
    """The model file at the root of ``model``'s fine-tuning chain (its own file name if none), so
    every round of fine-tuning adds to the same cases. File names, as the training summary keeps them."""
    bases = _baseNames(model.training)
    own = os.path.splitext(os.path.basename(model.path))[0] if model.path else model.name
    return safeName(bases[-1] if bases else own)


def casesFolder(model, environ=None):
    return os.path.join(userModelDir(environ), "cases", taskName(model))


def listCases(folder):
    """Names of the complete cases (image and labels) in a cases folder, sorted."""
    images, labels = os.path.join(folder, "images"), os.path.join(folder, "labels")
    if not (os.path.isdir(images) and os.path.isdir(labels)):
        return []
    have = {os.path.splitext(f)[0] for f in os.listdir(labels) if f.endswith(".nrrd")}
    return sorted(os.path.splitext(f)[0] for f in os.listdir(images) if f.endswith(".nrrd") and f[:-5] in have)


def readSource(folder, case):
    path = os.path.join(folder, "sources", case + ".json")
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _storageFile(node):
    storage = node.GetStorageNode() if hasattr(node, "GetStorageNode") else None
    return (storage.GetFileName() or "") if storage is not None else ""


def _classCounts(labels, classes):
    return {str(c["name"]): int((labels == int(c["label_value"])).sum()) for c in sceneio.foregroundClasses(classes)}


def addCase(segmentationNode, volumeNode, model, folder=None, engineLabels=None, now=None):
    """Write the volume and its (corrected) segmentation as a fine-tuning case of ``model``'s task.

    ``engineLabels``: the label map the engine gave for this segmentation (``[k, j, i]`` on the
    volume's grid), when known: the source record then says how many voxels the user changed.
    Returns the source record (a dict, also written as ``sources/<case>.json``).
    """
    folder = folder or casesFolder(model)
    now = now or datetime.datetime.now()
    for sub in ("images", "labels", "sources"):
        os.makedirs(os.path.join(folder, sub), exist_ok=True)
    base = safeName(f"{volumeNode.GetName()}-{now:%Y%m%d-%H%M%S}")
    case, n = base, 1
    while os.path.exists(os.path.join(folder, "images", case + ".nrrd")):
        n += 1
        case = f"{base}-{n}"
    imagePath = os.path.join(folder, "images", case + ".nrrd")
    labelPath = os.path.join(folder, "labels", case + ".nrrd")
    try:
        labels = exportSceneCase(segmentationNode, volumeNode, model.classes, imagePath, labelPath)
    except Exception:
        for path in (imagePath, labelPath):
            if os.path.exists(path):
                os.remove(path)
        raise
    scene = segmentationNode.GetScene()
    source = {
        "case": case,
        "added": now.isoformat(timespec="seconds"),
        "module_version": MODULE_VERSION,
        "task": taskName(model),
        "model": model.name,
        "volume": volumeNode.GetName(),
        "volume_file": _storageFile(volumeNode),
        "scene": (scene.GetURL() or "") if scene is not None else "",
        "segmentation": segmentationNode.GetName(),
        "segmented_by": segmentationNode.GetAttribute(sceneio.ATTR_MODEL) or "",
        "engine_run": json.loads(segmentationNode.GetAttribute(sceneio.ATTR_RESULT) or "null"),
        "voxels": _classCounts(labels, model.classes),
    }
    if engineLabels is not None and engineLabels.shape == labels.shape:
        source["corrected_voxels"] = int((engineLabels != labels).sum())
        source["agreement_before_correction"] = compareLabels(engineLabels, labels, model.classes)
    with open(os.path.join(folder, "sources", case + ".json"), "w", encoding="utf-8") as f:
        json.dump(source, f, indent=2)
    return source


def dice(a, b):
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total


def compareLabels(before, after, classes):
    """{"changed_voxels", "classes": {name: {"before", "after", "dice"}}} between two label maps."""
    if before.shape != after.shape:
        raise ValueError(f"label maps of different shapes {before.shape} and {after.shape}")
    out = {"changed_voxels": int((before != after).sum()), "classes": {}}
    for c in sceneio.foregroundClasses(classes):
        value = int(c["label_value"])
        a, b = before == value, after == value
        out["classes"][str(c["name"])] = {"before": int(a.sum()), "after": int(b.sum()), "dice": round(dice(a, b), 4)}
    return out


def describeChange(previous, corrected, new, classes):
    """The text shown after re-segmenting a corrected case with the fine-tuned model.

    ``previous``: the old model's labels (None if unknown); ``corrected``: the user's correction;
    ``new``: the fine-tuned model's labels. All ``[k, j, i]`` on the case's grid.
    """
    lines = []
    if previous is not None:
        moved = compareLabels(previous, new, classes)
        lines.append(f"The new model changed {moved['changed_voxels']} voxels of the old result.")
    for label, reference in (("old model", previous), ("new model", new)):
        if reference is None:
            continue
        agreement = compareLabels(corrected, reference, classes)["classes"]
        lines.append(
            f"Dice of the {label} to your correction: "
            + ", ".join(f"{name} {v['dice']:.3f}" for name, v in agreement.items())
        )
    return "\n".join(lines)
