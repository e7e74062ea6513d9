"""A real LDSeg result in Slicer's own slice blend, rendered headless (no OpenGL): docs/slice-view.png.

The engine segments a hippocampus MR crop through the module's SegmentationJob; the result is
shown the way the module shows it: the input as background, the SD map (Inferno, thresholded,
semi-transparent) as foreground, and the segments as outlines in the label layer (exported with
the model's class colors). ``vtkMRMLSliceLogic`` blends the three layers for the axial, coronal
and sagittal views; the three images are put side by side.

Run:  python Testing/slicer/render_slice_view.py [--model MODEL] [--image IMAGE] [--samples N] [-o PNG]
(default model: the first shipped 3D model ``ldseg models`` lists).
"""

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "LDSegExtension" / "LDSeg"))

import vtk  # noqa: E402
from slicescene import loadVolume, makeScene, sliceLogic  # noqa: E402
from vtk.util import numpy_support  # noqa: E402

from LDSegLib import sceneio, segment  # noqa: E402

DEFAULT_IMAGE = REPO.parent / "shared" / "data" / "hippocampus" / "images" / "hippocampus_015.nii.gz"
OUT = REPO / "docs" / "slice-view.png"


def labelLayer(scene, imported, volume):
    """The segments as a label map (model's values and colors) for the label layer."""
    labels = sceneio.exportLabelValues(imported.segmentationNode, volume)
    node = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "LDSeg labels (display)")
    sceneio.setIjkToRasArray(node, sceneio.ijkToRasArray(volume))
    node.SetAndObserveImageData(sceneio.imageFromArray(labels.astype(np.int16)))
    node.CreateDefaultDisplayNodes()
    node.GetDisplayNode().SetAndObserveColorNodeID(imported.colorTableNode.GetID())
    return node, labels


def blendImage(logic):
    blend = logic.GetBlend()
    blend.Update()
    image = blend.GetOutput()
    dims = image.GetDimensions()
    array = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
    array = array.reshape(dims[1], dims[0], -1)[::-1, :, :3]  # VTK rows go bottom-up
    return np.ascontiguousarray(array)


def viewCentreIjk(labels):
    """(i, j, k) of the labeled voxel nearest the centroid of the labels (the volume's centre if none)."""
    if not labels.any():
        return tuple((np.array(labels.shape[::-1]) - 1) / 2.0)
    k, j, i = np.nonzero(labels)
    points = np.stack([i, j, k], axis=1).astype(float)
    nearest = points[np.argmin(((points - points.mean(axis=0)) ** 2).sum(axis=1))]
    return tuple(nearest)


def renderViews(scene, volume, imported, size=360, labelOpacity=1.0):
    """RGB arrays of the Red, Green, Yellow blends through the centre of the largest segment."""
    labelNode, labels = labelLayer(scene, imported, volume)
    centre = (sceneio.ijkToRasArray(volume) @ np.array([*viewCentreIjk(labels), 1.0]))[:3]
    views = []
    for name in ("Red", "Green", "Yellow"):
        logic = sliceLogic(scene, name)
        sliceNode = logic.GetSliceNode()
        sliceNode.SetDimensions(size, size, 1)
        sliceNode.SetUseLabelOutline(True)
        composite = logic.GetSliceCompositeNode()
        composite.SetBackgroundVolumeID(volume.GetID())
        composite.SetForegroundVolumeID(imported.uncertaintyVolumeNode.GetID())
        composite.SetLabelVolumeID(labelNode.GetID())
        composite.SetLabelOpacity(labelOpacity)
        logic.FitSliceToAll()
        sliceNode.JumpSliceByOffsetting(*centre)
        views.append(blendImage(logic))
    return views


def backgroundOnly(scene, volume, size=360):
    """The same views with only the input (to see what the overlays add)."""
    out = []
    for name in ("Red", "Green", "Yellow"):
        logic = sliceLogic(scene, name)
        composite = logic.GetSliceCompositeNode()
        saved = (composite.GetForegroundVolumeID(), composite.GetLabelVolumeID())
        composite.SetForegroundVolumeID(None)
        composite.SetLabelVolumeID(None)
        out.append(blendImage(logic))
        composite.SetForegroundVolumeID(saved[0])
        composite.SetLabelVolumeID(saved[1])
    return out


def savePng(views, path, gap=6):
    from PIL import Image

    height = max(v.shape[0] for v in views)
    canvas = np.full((height, sum(v.shape[1] for v in views) + gap * (len(views) - 1), 3), 24, np.uint8)
    x = 0
    for v in views:
        canvas[: v.shape[0], x : x + v.shape[1]] = v
        x += v.shape[1] + gap
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(canvas).save(path)
    return path


def segmentAndRender(
    model, image=DEFAULT_IMAGE, out=OUT, samples=10, env=None, python=None, sdThreshold=0.02, sdOpacity=0.55, size=360
):
    """Run the engine on ``image`` with ``model`` and write the three-view picture. Returns (path, job, views)."""
    scene = makeScene()
    volume = loadVolume(scene, image, name=Path(image).name.split(".")[0])
    settings = segment.SegmentSettings(
        model=str(model), samples=samples, seed=0, sdThreshold=sdThreshold, sdOpacity=sdOpacity
    )
    job = segment.SegmentationJob(scene, volume, settings, python=python or sys.executable, env=env)
    job.start()
    job.wait(timeout=900)
    if not job.succeeded:
        raise RuntimeError(f"the engine failed: {job.error}")
    views = renderViews(scene, volume, job.result, size=size)
    return savePng(views, out), job, views, scene, volume


def defaultModel():
    models = [m for m in segment.listModels() if not m.error and m.dims == 3 and m.channels == 1]
    shipped = [m for m in models if m.source == "shipped"]
    if not (shipped or models):
        raise SystemExit("No 3D model found: pass --model MODEL_FILE")
    return (shipped or models)[0].path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model")
    parser.add_argument("--image", default=str(DEFAULT_IMAGE))
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("-o", "--output", default=str(OUT))
    args = parser.parse_args(argv)
    vtk.vtkObject.GlobalWarningDisplayOff()
    path, job, _, _, _ = segmentAndRender(args.model or defaultModel(), args.image, args.output, args.samples)
    print(f"{path}  ({job.deviceUsed}, {job.seconds:.1f} s, model {job.resultJson['model']})")


if __name__ == "__main__":
    main()
