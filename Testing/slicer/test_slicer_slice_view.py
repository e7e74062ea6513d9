"""Slicer's own slice blend of a real engine result (input + segments + SD overlay), rendered headless."""

import numpy as np
import render_slice_view
from slicertesting import HIPPOCAMPUS

from LDSegLib import sceneio


def test_slice_view_picture_of_a_real_result(engineEnv, tinyModel, tmp_path):
    image = HIPPOCAMPUS / "images" / "hippocampus_015.nii.gz"
    path, job, views, scene, volume = render_slice_view.segmentAndRender(
        tinyModel.path, image, tmp_path / "slice-view.png", samples=3, env=engineEnv, sdThreshold=0.02, size=200
    )
    assert job.succeeded and path.is_file()
    from PIL import Image

    picture = np.asarray(Image.open(path))
    assert picture.shape == (200, 3 * 200 + 2 * 6, 3)

    background = render_slice_view.backgroundOnly(scene, volume, size=200)
    sd = sceneio.arrayFromImage(job.result.uncertaintyVolumeNode)
    labels = sceneio.exportLabelValues(job.result.segmentationNode, volume)
    for view, plain in zip(views, background):
        assert view.shape == plain.shape == (200, 200, 3)
        assert plain.std() > 5  # the MR input is drawn
    if (sd > 0.02).any():  # the SD overlay changes the picture
        assert any(np.abs(v.astype(int) - p).sum() > 0 for v, p in zip(views, background))
    if labels.any():  # the view goes through a labeled voxel: its class color is drawn (label outline)
        value = labels[tuple(int(round(c)) for c in render_slice_view.viewCentreIjk(labels)[::-1])]
        color = next(c["color"] for c in job.result.classes if int(c["label_value"]) == int(value))
        rgb = np.array(sceneio.normalizedColor(color)) * 255
        red = views[0].reshape(-1, 3).astype(float)
        assert (np.abs(red - rgb).max(axis=1) <= 3).any(), f"no pixel of the class color {rgb} in the axial view"
