"""Preprocessing: config checks, input checks, normalization, resampling."""

import json

import numpy as np
import pytest
import torch

from ldseg.data.preprocess import (
    Preprocessing,
    check_image,
    classes_to_labels,
    labels_to_classes,
    normalize_intensity,
    prepare_image,
    prepare_label,
)
from ldseg.errors import InputError
from ldseg.io.images import Geometry, MedicalImage, read_image, read_label

PRE_3D = Preprocessing(dims=3, channels=1, grid=(8, 16, 16))
PRE_2D_RGB = Preprocessing(dims=2, channels=3, grid=(32, 32), label_values=(0, 255))


def _image(array, name="case_7.nii.gz"):
    array = np.asarray(array, dtype=np.float32)
    return MedicalImage(array, Geometry.identity(array.ndim - 1), source=f"/some/folder/{name}")


def _error(func, *args) -> str:
    with pytest.raises(InputError) as err:
        func(*args)
    message = str(err.value)
    assert "\n" not in message
    return message


# -- config -------------------------------------------------------------------


def test_config_round_trip_through_json():
    pre = Preprocessing(
        dims=3,
        channels=1,
        grid=(16, 32, 32),
        intensity="percentile",
        percentiles=(1, 99),
        label_values=(0, 1, 7, 8, 9),
    )
    back = Preprocessing.from_dict(json.loads(json.dumps(pre.to_dict())))
    assert back == pre and back.num_classes == 5
    assert isinstance(back.grid, tuple)


@pytest.mark.parametrize(
    "change, word",
    [
        ({"dims": 4}, "dims"),
        ({"grid": [8, 8]}, "grid"),
        ({"grid": [8, 8, 1]}, "grid"),
        ({"channels": 0}, "channels"),
        ({"intensity": "histogram"}, "intensity"),
        ({"percentiles": [99, 1]}, "percentiles"),
        ({"label_values": [0]}, "label_values"),
        ({"label_values": [0, 1, 1]}, "unique"),
        ({"label_values": [0, 1.5]}, "label_values"),
        ({"dims": True}, "dims"),
        ({"extra": 1}, "unknown"),
    ],
)
def test_from_dict_rejects_bad_values(change, word):
    data = {"dims": 3, "channels": 1, "grid": [8, 8, 8]}
    data.update(change)
    with pytest.raises(ValueError, match=word):
        Preprocessing.from_dict(data)


def test_from_dict_requires_fields():
    with pytest.raises(ValueError, match="grid"):
        Preprocessing.from_dict({"dims": 3, "channels": 1})


# -- image checks -------------------------------------------------------------


def test_wrong_dims():
    message = _error(check_image, _image(np.random.rand(1, 8, 8)), PRE_3D)
    assert "case_7.nii.gz" in message and "is 2D" in message and "3D" in message


def test_wrong_channels_both_ways():
    message = _error(check_image, _image(np.random.rand(3, 8, 8, 8)), PRE_3D)
    assert "case_7.nii.gz" in message and "3 channels" in message
    gray = _image(np.random.rand(1, 8, 8), name="gray.png")
    message = _error(check_image, gray, PRE_2D_RGB)
    assert "gray.png" in message and "RGB" in message


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf(bad):
    array = np.random.rand(1, 4, 4, 4)
    array[0, 1, 2, 3] = bad
    message = _error(check_image, _image(array), PRE_3D)
    assert "case_7.nii.gz" in message and "NaN" in message


def test_constant_and_too_small():
    message = _error(check_image, _image(np.full((1, 4, 4, 4), 3.0)), PRE_3D)
    assert "case_7.nii.gz" in message and "same value" in message
    message = _error(check_image, _image(np.random.rand(1, 1, 4, 4)), PRE_3D)
    assert "case_7.nii.gz" in message and "too small" in message


def test_single_slice_given_to_2d_model():
    message = _error(check_image, _image(np.random.rand(3, 1, 6, 6)), PRE_2D_RGB)
    assert "single-slice" in message


# -- intensity ----------------------------------------------------------------


def test_minmax_gives_unit_range(shared_data):
    image = read_image(shared_data / "samples" / "breast1_image.nrrd")
    out = normalize_intensity(image.array, PRE_3D)
    assert out.dtype == np.float32
    assert out.min() == 0.0 and out.max() == 1.0


def test_other_intensity_methods():
    array = np.concatenate([np.linspace(0, 1, 999), [1000.0]]).astype(np.float32)
    pct = Preprocessing(
        dims=2,
        channels=1,
        grid=(4, 4),
        intensity="percentile",
        percentiles=(0.0, 99.0),
    )
    out = normalize_intensity(array, pct)
    assert out.min() == 0 and out.max() == 1
    assert np.median(out) > 0.4  # the outlier no longer squashes the rest
    z = normalize_intensity(
        array,
        Preprocessing(dims=2, channels=1, grid=(4, 4), intensity="zscore"),
    )
    assert abs(z.mean()) < 1e-4 and abs(z.std() - 1) < 1e-3
    none = normalize_intensity(array, Preprocessing(dims=2, channels=1, grid=(4, 4), intensity="none"))
    np.testing.assert_array_equal(none, array)


def test_prepare_image_shapes(shared_data):
    image = read_image(shared_data / "glas" / "train" / "images" / "train_1.png")
    tensor = prepare_image(image, PRE_2D_RGB)
    assert tensor.shape == (3, 32, 32) and tensor.dtype == torch.float32
    assert 0 <= tensor.min() and tensor.max() <= 1
    volume = read_image(shared_data / "hippocampus" / "images" / "hippocampus_001.nii.gz")
    tensor = prepare_image(volume, PRE_3D)
    assert tensor.shape == (1, 8, 16, 16)


# -- labels -------------------------------------------------------------------


def test_unknown_label_values_are_named():
    labels = np.array([[0, 1, 3], [7, 2, 0]])
    pre = Preprocessing(dims=2, channels=1, grid=(4, 4), label_values=(0, 1, 2))
    message = _error(labels_to_classes, labels, pre, "/data/labels/hippocampus_001.nii.gz")
    assert message == ("hippocampus_001.nii.gz: label values {3, 7} are not known to the model (known: 0, 1, 2)")


def test_prostate_labels_map_to_classes(shared_data):
    path = shared_data / "samples" / "prostate_phantom_subvolume-label.nrrd"
    labels, _ = read_label(path)
    pre = Preprocessing(dims=3, channels=1, grid=labels.shape, label_values=(0, 1, 7, 8, 9))
    classes = labels_to_classes(labels, pre, str(path))
    for index, value in enumerate(pre.label_values):
        assert np.array_equal(classes == index, labels == value)
    same_grid = prepare_label(labels, pre, str(path))
    assert same_grid.dtype == torch.int64
    np.testing.assert_array_equal(same_grid.numpy(), classes)
    small = Preprocessing(dims=3, channels=1, grid=(8, 32, 32), label_values=(0, 1, 7, 8, 9))
    resampled = prepare_label(labels, small, str(path))
    assert resampled.shape == (8, 32, 32) and resampled.dtype == torch.int64
    assert set(resampled.unique().tolist()) == {0, 1, 2, 3, 4}
    back = classes_to_labels(resampled.numpy(), small)
    assert back.dtype == np.uint8
    assert set(np.unique(back)) == {0, 1, 7, 8, 9}


def test_label_order_need_not_be_sorted():
    pre = Preprocessing(dims=2, channels=1, grid=(2, 2), label_values=(0, 9, 4))
    classes = labels_to_classes(np.array([[0, 4], [9, 9]]), pre, "x.png")
    assert classes.tolist() == [[0, 2], [1, 1]]
    assert classes_to_labels(classes, pre).tolist() == [[0, 4], [9, 9]]


def test_classes_to_labels_dtype():
    wide = Preprocessing(dims=2, channels=1, grid=(2, 2), label_values=(0, 1000))
    assert classes_to_labels(np.array([0, 1]), wide).dtype == np.uint16
    negative = Preprocessing(dims=2, channels=1, grid=(2, 2), label_values=(-1, 5))
    assert classes_to_labels(np.array([0, 1]), negative).tolist() == [-1, 5]
