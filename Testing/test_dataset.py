"""Data set folders, pairing, split, the cached Dataset, and augmentation."""

import zlib

import numpy as np
import pytest
import torch

from ldseg.config import INTENSITY_JITTER, IntensityJitter, Preprocessing
from ldseg.data.augment import random_flip, random_intensity
from ldseg.data.dataset import (
    CasePair,
    SegmentationDataset,
    find_pairs,
    split_cases,
)
from ldseg.data.orientation import left_right_axis
from ldseg.errors import InputError
from ldseg.io.images import Geometry, write_image

PRE = Preprocessing(dims=3, channels=1, grid=(8, 8, 8), label_values=(0, 1, 2))
GEOMETRY = Geometry((1.0, 1.0, 2.0), (5.0, 6.0, 7.0), Geometry.identity(3).direction)


def _error(func, *args, **kwargs) -> str:
    with pytest.raises(InputError) as err:
        func(*args, **kwargs)
    message = str(err.value)
    assert "\n" not in message
    return message


def _make_case(
    root,
    name,
    *,
    label=None,
    image_shape=(6, 7, 8),
    label_geometry=GEOMETRY,
    write_label=True,
    write_image_=True,
):
    """Write a small random image and a label with one foreground box."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    if write_image_:
        write_image(
            rng.random(image_shape).astype(np.float32),
            GEOMETRY,
            root / "images" / f"{name}.nii.gz",
        )
    if label is None:
        label = np.zeros(image_shape, np.uint8)
        label[1:3, 1:4, 2:5] = 1
        label[3:5, 1:4, 2:5] = 2
    if write_label:
        write_image(label, label_geometry, root / "labels" / f"{name}.nrrd")


# -- find_pairs ---------------------------------------------------------------


def test_find_pairs_real_data(shared_data):
    glas = find_pairs(shared_data / "glas" / "train")
    assert len(glas) == 85
    assert [p.name for p in glas] == sorted(p.name for p in glas)
    hippo = find_pairs(shared_data / "hippocampus")
    assert len(hippo) == 208
    assert hippo[0].name == "hippocampus_001"
    assert hippo[0].image.name == "hippocampus_001.nii.gz"
    assert hippo[0].label.parent.name == "labels"


def test_find_pairs_ignores_hidden_and_other_files(tmp_path):
    _make_case(tmp_path, "b")
    _make_case(tmp_path, "a")
    (tmp_path / "images" / ".DS_Store").write_text("x")
    (tmp_path / "labels" / "README.txt").write_text("notes")
    assert [p.name for p in find_pairs(tmp_path)] == ["a", "b"]


def test_find_pairs_errors(tmp_path):
    assert "not found" in _error(find_pairs, tmp_path / "nope")
    (tmp_path / "images").mkdir()
    assert "labels" in _error(find_pairs, tmp_path)
    (tmp_path / "labels").mkdir()
    assert "no images" in _error(find_pairs, tmp_path)
    _make_case(tmp_path, "case1")
    _make_case(tmp_path, "case2", write_label=False)
    message = _error(find_pairs, tmp_path)
    assert "case2.nii.gz" in message and "without a label" in message


def test_find_pairs_extra_label(tmp_path):
    _make_case(tmp_path, "case1")
    _make_case(tmp_path, "orphan", write_image_=False)
    message = _error(find_pairs, tmp_path)
    assert "orphan.nrrd" in message and "without an image" in message


def test_find_pairs_lists_at_most_five(tmp_path):
    for i in range(8):
        _make_case(tmp_path, f"c{i}", write_label=False)
    _make_case(tmp_path, "ok")
    message = _error(find_pairs, tmp_path)
    assert "c4.nii.gz" in message and "c5.nii.gz" not in message
    assert "3 more" in message


# -- split --------------------------------------------------------------------


def _pairs(names):
    return [CasePair(n, f"{n}.png", f"{n}.png") for n in names]


def test_split_is_fixed_and_sorted():
    pairs = _pairs([f"case{i:02d}" for i in range(10)])
    shuffled = list(reversed(pairs))
    train, val = split_cases(shuffled, 0.2)
    assert [p.name for p in val] == ["case08", "case09"]
    assert [p.name for p in train] == [f"case{i:02d}" for i in range(8)]
    assert split_cases(pairs, 0.2) == (train, val)


def test_split_edge_cases():
    assert split_cases(_pairs(["a", "b"]), 0.1) == (
        _pairs(["a"]),
        _pairs(["b"]),
    )
    assert split_cases(_pairs(["a"]), 0.5) == (_pairs(["a"]), [])
    assert split_cases(_pairs(["a", "b", "c"]), 0.0) == (
        _pairs(["a", "b", "c"]),
        [],
    )
    with pytest.raises(ValueError):
        split_cases(_pairs(["a"]), 1.0)


# -- dataset ----------------------------------------------------------------


def test_dataset_on_hippocampus(shared_data):
    pairs = find_pairs(shared_data / "hippocampus")[:4]
    pre = Preprocessing(dims=3, channels=1, grid=(16, 24, 16), label_values=(0, 1, 2))
    seen = []
    data = SegmentationDataset(pairs, pre, progress=lambda f, m: seen.append((f, m)))
    assert len(data) == 4
    assert data.names == [p.name for p in pairs]
    assert data.spacings[0] == (1.0, 1.0, 1.0)
    image, label = data[2]
    assert image.shape == (1, 16, 24, 16) and image.dtype == torch.float32
    assert label.shape == (16, 24, 16) and label.dtype == torch.int64
    assert set(label.unique().tolist()) == {0, 1, 2}
    assert 0 <= image.min() and image.max() <= 1
    assert seen[0][0] == 0 and seen[-1][0] == 1.0


def test_dataset_on_synthetic_cases(tmp_path):
    _make_case(tmp_path, "a")
    _make_case(tmp_path, "b")
    data = SegmentationDataset(find_pairs(tmp_path), PRE)
    assert len(data) == 2 and data[0][0].shape == (1, 8, 8, 8)
    assert data.spacings == [(1.0, 1.0, 2.0)] * 2


@pytest.mark.parametrize(
    "problem, words",
    [
        ("size", ["label size 6x7x9", "6x7x8"]),
        ("geometry", ["geometry", "origin"]),
        ("empty", ["no foreground"]),
        ("unknown", ["{5}", "known: 0, 1, 2"]),
    ],
)
def test_dataset_problems_name_the_label(tmp_path, problem, words):
    _make_case(tmp_path, "good")
    label = np.zeros((6, 7, 8), np.uint8)
    label[2:4, 2:4, 2:4] = 1
    geometry = GEOMETRY
    if problem == "size":
        label = np.zeros((6, 7, 9), np.uint8)
        label[2, 2, 2] = 1
    elif problem == "geometry":
        geometry = Geometry(GEOMETRY.spacing, (5.0, 6.0, 9.0), GEOMETRY.direction)
    elif problem == "empty":
        label[:] = 0
    elif problem == "unknown":
        label[0, 0, 0] = 5
    _make_case(tmp_path, "bad", label=label, label_geometry=geometry)
    message = _error(SegmentationDataset, find_pairs(tmp_path), PRE)
    assert "bad.nrrd" in message
    for word in words:
        assert word in message


def test_dataset_allows_empty_labels_when_asked(tmp_path):
    _make_case(tmp_path, "empty", label=np.zeros((6, 7, 8), np.uint8))
    data = SegmentationDataset(find_pairs(tmp_path), PRE, require_foreground=False)
    assert int(data[0][1].sum()) == 0


def test_dataset_image_problem_names_the_image(tmp_path):
    _make_case(tmp_path, "flat")
    write_image(
        np.full((6, 7, 8), 4.0, np.float32),
        GEOMETRY,
        tmp_path / "images" / "flat.nii.gz",
    )
    message = _error(SegmentationDataset, find_pairs(tmp_path), PRE)
    assert "flat.nii.gz" in message and "same value" in message


# -- augmentation -------------------------------------------------------------


def test_random_flip_reproducible_and_consistent():
    images = torch.arange(4 * 2 * 3 * 4 * 5, dtype=torch.float32).reshape(4, 2, 3, 4, 5)
    labels = images[:, 0].long()
    first = random_flip(images, labels, torch.Generator().manual_seed(7))
    second = random_flip(images, labels, torch.Generator().manual_seed(7))
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    flipped_images, flipped_labels = first
    # Labels were built from channel 0, so they must still agree after flips.
    assert torch.equal(flipped_images[:, 0].long(), flipped_labels)
    assert not torch.equal(flipped_images, images)
    # Each sample is a flip of its own original (some combination of axes).
    for b in range(4):
        options = [images[b].flip([a + 1 for a in range(3) if m >> a & 1]) for m in range(8)]
        assert any(torch.equal(flipped_images[b], o) for o in options)


def test_random_flip_probability_extremes():
    images = torch.rand(2, 1, 4, 4)
    labels = (images[:, 0] > 0.5).long()
    generator = torch.Generator().manual_seed(0)
    same = random_flip(images, labels, generator, p=0.0)
    assert torch.equal(same[0], images)
    both = random_flip(images, labels, generator, p=1.0)
    assert torch.equal(both[0], images.flip(2, 3))
    assert torch.equal(both[1], labels.flip(1, 2))


def test_left_right_axis_follows_the_direction_matrix():
    # (z, y, x) arrays: with SimpleITK's identity (LPS) and a NIfTI stored RAS, x (array axis 2) is left-right
    assert left_right_axis(Geometry.identity(3).direction, 3) == 2
    assert left_right_axis((-1, 0, 0, 0, -1, 0, 0, 0, 1), 3) == 2
    # a sagittal stack: image axis 2 runs left-right, so array axis 0 does
    assert left_right_axis((0, 0, 1, 1, 0, 0, 0, 1, 0), 3) == 0
    # an oblique one: the nearest axis wins
    assert left_right_axis((0.2, 0.98, 0, 0.98, -0.2, 0, 0, 0, 1), 3) == 1
    assert left_right_axis((1, 0, 0, 1), 2) == 1
    with pytest.raises(ValueError):
        left_right_axis((1, 0, 0, 1), 3)


def test_random_flip_keeps_to_the_allowed_axes_with_the_same_draws():
    images = torch.rand(2, 1, 3, 4, 5)
    labels = (images[:, 0] > 0.5).long()
    allowed = torch.tensor([[False, False, True], [True, False, False]])
    g = torch.Generator().manual_seed(0)
    flipped, flipped_labels = random_flip(images, labels, g, p=1.0, allowed=allowed)
    assert torch.equal(flipped[0], images[0].flip(3)) and torch.equal(flipped[1], images[1].flip(1))
    assert torch.equal(flipped_labels[0], labels[0].flip(2))
    # as many random values drawn as without the limit, so resumed runs stay exact
    unlimited = torch.Generator().manual_seed(0)
    random_flip(images, labels, unlimited)
    assert torch.equal(torch.rand(3, generator=g), torch.rand(3, generator=unlimited))
    with pytest.raises(ValueError):
        random_flip(images, labels, g, allowed=torch.ones(2, 2, dtype=torch.bool))


def test_random_intensity_is_reproducible_and_draws_the_same_values_applied_or_not():
    images = torch.rand(3, 3, 12, 10)
    a = random_intensity(images, torch.Generator().manual_seed(1), INTENSITY_JITTER)
    b = random_intensity(images, torch.Generator().manual_seed(1), INTENSITY_JITTER)
    c = random_intensity(images, torch.Generator().manual_seed(2), INTENSITY_JITTER)
    assert torch.equal(a, b) and a.shape == images.shape and not torch.equal(a, c)
    # a resumed run replays its augmentations only if every call draws alike
    never, always = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    random_intensity(images, never, IntensityJitter(gamma_p=0.0, noise_p=0.0))
    random_intensity(images, always, IntensityJitter(gamma_p=1.0, noise_p=1.0))
    assert torch.equal(torch.rand(4, generator=never), torch.rand(4, generator=always))


def test_random_intensity_strengths_are_fractions_of_the_image_range():
    images = torch.rand(4, 1, 8, 8, 8)
    off = IntensityJitter(contrast=0.0, brightness=0.0, gamma=0.0, noise=0.0)
    assert torch.allclose(random_intensity(images, torch.Generator().manual_seed(0), off), images, atol=1e-6)
    # the same change whatever the normalization: HU-like units give the scaled result
    jitter = IntensityJitter(gamma_p=1.0, noise_p=1.0)
    unit = random_intensity(images, torch.Generator().manual_seed(3), jitter)
    hu = random_intensity(images * 1500 - 1000, torch.Generator().manual_seed(3), jitter)
    assert torch.allclose(hu, unit * 1500 - 1000, atol=1e-2)
    # bounded: contrast 25 %, brightness 10 %, noise SD at most 10 % of the range
    change = (unit - images).std(dim=(1, 2, 3, 4))
    assert bool((change < 0.25).all()) and bool((change > 0).all())


def test_random_intensity_changes_colour_channels_independently():
    grey = torch.rand(8, 1, 16, 16).expand(8, 3, 16, 16).contiguous()
    jitter = IntensityJitter(gamma_p=0.0, noise_p=0.0)
    out = random_intensity(grey, torch.Generator().manual_seed(0), jitter)
    # a stain change: the three channels no longer agree
    assert (out[:, 0] - out[:, 1]).abs().amax() > 0.01
