"""The model's anatomical axis order: a 3D "RAS" model reads a volume the same
whatever axis order its file stores, exactly (no interpolation), and puts its
results back on the input's own grid."""

import itertools

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from conftest import make_model_file

from ldseg.config import Preprocessing
from ldseg.data.dataset import CasePair, SegmentationDataset, find_pairs
from ldseg.data.orientation import AxisTurn, canonical_turn
from ldseg.inference.segmenter import Segmenter
from ldseg.io.modelheader import read_config
from ldseg.training.presets import config_for_dataset

RAS_STORED = (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)  # LPS direction of a NIfTI stored RAS


def _stored_as(image: sitk.Image, order, reverse) -> sitk.Image:
    """The same voxels in space, stored with image axes permuted and reversed."""
    return sitk.Flip(sitk.PermuteAxes(image, list(order)), list(reverse))


def _orders():
    for order in itertools.permutations(range(3)):
        for reverse in itertools.product((False, True), repeat=3):
            yield order, reverse


def test_ras_stored_arrays_are_not_turned_and_lps_ones_are_reversed():
    assert canonical_turn(RAS_STORED, 3, "RAS").is_identity
    assert canonical_turn((1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0), 3, "RAS") == AxisTurn((0, 1, 2), (False, True, True))
    assert canonical_turn((1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0), 3, "none").is_identity
    # an oblique scan (20 degrees about S): each axis goes to the patient axis it is closest to
    c, s = np.cos(np.radians(20)), np.sin(np.radians(20))
    assert canonical_turn((-c, s, 0, -s, -c, 0, 0, 0, 1), 3, "RAS").is_identity
    with pytest.raises(ValueError):
        canonical_turn((1.0, 0, 0, 1.0), 2, "RAS")


def test_every_stored_axis_order_turns_to_the_same_array_and_back():
    rng = np.random.default_rng(0)
    ras = sitk.GetImageFromArray(rng.random((4, 5, 6)).astype(np.float32))
    ras.SetDirection(RAS_STORED)
    reference = torch.from_numpy(sitk.GetArrayFromImage(ras))
    for order, reverse in _orders():
        stored = _stored_as(ras, order, reverse)
        turn = canonical_turn(stored.GetDirection(), 3, "RAS")
        array = torch.from_numpy(sitk.GetArrayFromImage(stored))[None]
        assert torch.equal(turn.apply(array)[0], reference), (order, reverse)
        assert tuple(turn.shape(array.shape[1:])) == tuple(reference.shape)
        assert torch.equal(turn.undo(turn.apply(array)), array)


def test_orientation_is_stored_validated_and_absent_in_older_files():
    pre = Preprocessing(dims=3, channels=1, grid=(8, 8, 8), orientation="RAS")
    assert Preprocessing.from_dict(pre.to_dict()) == pre
    legacy = {k: v for k, v in pre.to_dict().items() if k != "orientation"}
    assert Preprocessing.from_dict(legacy).orientation == "none"  # older model files: stored order
    for bad in ({"orientation": "LPS"}, {"orientation": "RAS", "dims": 2, "grid": (8, 8)}):
        with pytest.raises(ValueError, match="orientation"):
            Preprocessing.from_dict({**pre.to_dict(), **bad})


def test_new_3d_models_use_ras_and_2d_ones_the_stored_order(shared_data):
    hippocampus = find_pairs(shared_data / "hippocampus")[:2]
    glands = find_pairs(shared_data / "glas" / "train")[:2]
    assert config_for_dataset(hippocampus, size="tiny", grid=(8, 8, 8)).preprocessing.orientation == "RAS"
    assert config_for_dataset(glands, size="tiny", grid=(16, 16)).preprocessing.orientation == "none"


@pytest.fixture
def restored_case(shared_data, tmp_path):
    """A real hippocampus crop, and the same crop stored in DICOM-like LPS order and as a sagittal stack."""
    root = tmp_path / "stored"
    source = find_pairs(shared_data / "hippocampus")[0]
    pairs = [source]
    for name, order, reverse in (("lps", (0, 1, 2), (True, True, False)), ("sagittal", (2, 0, 1), (False, True, True))):
        for kind, path in (("images", source.image), ("labels", source.label)):
            (root / kind).mkdir(parents=True, exist_ok=True)
            sitk.WriteImage(_stored_as(sitk.ReadImage(str(path)), order, reverse), str(root / kind / f"{name}.nii.gz"))
        pairs.append(CasePair(name, root / "images" / f"{name}.nii.gz", root / "labels" / f"{name}.nii.gz"))
    return pairs


def test_training_tensors_are_the_same_whatever_the_stored_order(restored_case):
    pre = Preprocessing(dims=3, channels=1, grid=(12, 16, 12), label_values=(0, 1, 2), orientation="RAS")
    data = SegmentationDataset(restored_case, pre)
    for i in (1, 2):
        assert torch.equal(data[i][0], data[0][0]) and torch.equal(data[i][1], data[0][1])
    stored_order = SegmentationDataset(restored_case, Preprocessing(**{**pre.to_dict(), "orientation": "none"}))
    assert not torch.equal(stored_order[1][0], stored_order[0][0])  # what older models see


def test_segmenting_a_differently_stored_copy_gives_the_same_result_on_its_grid(restored_case, tmp_path):
    model = make_model_file(tmp_path / "ras.safetensors", grid=(12, 16, 12), label_values=(0, 1, 2), orientation="RAS")
    assert read_config(model).preprocessing.orientation == "RAS"
    segmenter = Segmenter(model, device="cpu", precision="fp32")
    results = [segmenter.segment(str(pair.image), samples=3, seed=0) for pair in restored_case]
    for pair, result in zip(restored_case, results):
        image = sitk.ReadImage(str(pair.image))
        assert result.labels.shape == sitk.GetArrayFromImage(image).shape
        assert result.geometry.direction == pytest.approx(image.GetDirection())
        # back in RAS order, voxel for voxel the original's result
        ras = sitk.GetImageFromArray(result.probabilities[1])
        ras.CopyInformation(image)
        turned = sitk.DICOMOrient(ras, "RAS")
        assert turned.GetDirection() == RAS_STORED
        turned = sitk.GetArrayFromImage(turned)
        assert np.allclose(turned, results[0].probabilities[1], atol=1e-5)


def test_an_array_without_geometry_is_taken_in_the_model_axis_order(restored_case, tmp_path):
    model = make_model_file(tmp_path / "ras.safetensors", grid=(12, 16, 12), label_values=(0, 1, 2), orientation="RAS")
    segmenter = Segmenter(model, device="cpu", precision="fp32")
    array = sitk.GetArrayFromImage(sitk.ReadImage(str(restored_case[1].image)))  # stored LPS: turned from a file
    as_ras = sitk.GetImageFromArray(array)
    as_ras.SetDirection(RAS_STORED)
    sitk.WriteImage(as_ras, str(tmp_path / "as_ras.nii.gz"))
    bare = segmenter.segment(array, samples=2, seed=0).probabilities
    assert np.allclose(bare, segmenter.segment(str(tmp_path / "as_ras.nii.gz"), samples=2, seed=0).probabilities)
    assert not np.allclose(bare, segmenter.segment(str(restored_case[1].image), samples=2, seed=0).probabilities)
