"""The main job's example image (scripts/make_example_image.py): a hippocampus crop of the
MNI152 T1 template shipped in the nilearn wheel, with the template's geometry, on which the
shipped default model gives a plausible anterior / posterior segmentation."""

import importlib.util
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[1]

if importlib.util.find_spec("nilearn") is None:  # the `example` / `test` extra installs it
    pytest.skip("nilearn (the example extra) is not installed", allow_module_level=True)

_spec = importlib.util.spec_from_file_location("make_example_image", ROOT / "scripts" / "make_example_image.py")
make_example_image = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_example_image)


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    path = tmp_path_factory.mktemp("example") / "mni152_left_hippocampus.nii.gz"
    assert make_example_image.main(["-o", str(path)]) == 0
    return path


def test_crop_has_the_template_geometry_and_content(example, tmp_path):
    image = sitk.ReadImage(str(example))
    assert image.GetSize() == make_example_image.SIZE == (32, 46, 32)
    assert image.GetSpacing() == (1.0, 1.0, 1.0)
    # RAS array (a left hippocampus lies in it as in the Decathlon crops): LPS direction diag(-1, -1, 1)
    assert image.GetDirection() == (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)
    assert image.GetOrigin() == (43.0, 45.0, -28.0)  # MNI (-43, -45, -28) mm in LPS
    array = sitk.GetArrayFromImage(image)
    assert array.std() > 10 and (array > 0).mean() > 0.99  # brain tissue, not the masked background

    # Every voxel is the template's voxel at the same physical point: geometry and intensities kept.
    template = nib.load(make_example_image.template_path())
    crop = nib.load(example)
    index = np.indices(crop.shape).reshape(3, -1)
    world = crop.affine @ np.vstack([index, np.ones(index.shape[1])])
    source = np.rint(np.linalg.inv(template.affine) @ world)[:3].astype(int)
    assert np.array_equal(np.asarray(crop.dataobj).ravel(), np.asarray(template.dataobj)[tuple(source)])

    # The right side is the mirrored box, axis 0 reversed (LAS): on this symmetric template, the same array.
    right = tmp_path / "right.nii.gz"
    assert make_example_image.main(["-o", str(right), "--side", "right"]) == 0
    right_image = sitk.ReadImage(str(right))
    assert right_image.GetDirection() == (1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)
    assert right_image.GetOrigin() == (-43.0, 45.0, -28.0)
    assert np.array_equal(sitk.GetArrayFromImage(right_image), array)


@pytest.mark.parametrize("precision", ["auto", "fp32"])
def test_default_model_segments_the_example_plausibly(example, precision):
    from ldseg.inference.segmenter import Segmenter

    result = Segmenter(device="cpu", precision=precision).segment(str(example), samples=10, seed=0)
    labels = result.labels  # (z, y, x); y runs posterior -> anterior
    anterior, posterior = labels == 1, labels == 2
    # Decathlon training labels: 1054-2593 anterior and 993-2169 posterior voxels (1 mm).
    assert 700 < anterior.sum() < 3000 and 700 < posterior.sum() < 3000
    shift = np.argwhere(anterior).mean(axis=0) - np.argwhere(posterior).mean(axis=0)
    assert shift[1] > 6  # the head lies anterior of body and tail (Decathlon: +18 on average)
    assert shift[0] < -1  # and lower (Decathlon: -7)
    fg = labels > 0
    edge = fg & ~_eroded(fg)
    assert result.sd[edge].mean() > 5 * result.sd[_eroded(_eroded(fg))].mean()  # SD on the borders


def test_default_model_reads_a_dicom_ordered_copy_as_the_original(example, tmp_path):
    """The same crop stored as DICOM orders it (LPS: i toward left, j toward posterior) reaches
    the default model in the same anatomical axis order: the same segmentation, on its own grid."""
    from ldseg.inference.segmenter import Segmenter

    lps = tmp_path / "lps.nii.gz"
    sitk.WriteImage(sitk.DICOMOrient(sitk.ReadImage(str(example)), "LPS"), str(lps))
    segmenter = Segmenter(device="cpu", precision="fp32")
    original = segmenter.segment(str(example), samples=10, seed=0)
    copy = segmenter.segment(str(lps), samples=10, seed=0)
    assert copy.geometry.direction == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    back = sitk.GetImageFromArray(copy.labels)
    back.CopyInformation(sitk.ReadImage(str(lps)))
    back = sitk.GetArrayFromImage(sitk.DICOMOrient(back, "RAS"))
    assert (back == original.labels).mean() > 0.999 and (original.labels > 0).sum() > 1400


def _eroded(mask):
    from scipy.ndimage import binary_erosion

    return binary_erosion(mask)
