"""Classes named by a body side under left-right flips: a flipped left kidney
must be labelled right, and a side without a partner must never be flipped."""

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from ldseg.config import TrainOptions
from ldseg.data.augment import random_flip
from ldseg.data.dataset import CasePair, SegmentationDataset, find_pairs
from ldseg.data.laterality import laterality
from ldseg.io.modelheader import read_config
from ldseg.training.presets import config_for_dataset
from ldseg.training.trainer import Trainer


@pytest.mark.parametrize(
    "names, swap, unpaired",
    [
        (("background", "kidney_left", "kidney_right", "liver"), (0, 2, 1, 3), ()),
        (("bg", "Left-Hippocampus", "Right-Hippocampus"), (0, 2, 1), ()),
        (("bg", "Left kidney", "kidney_right"), (0, 2, 1), ()),  # words in any order and case
        (("bg", "LeftKidney", "RightKidney"), (0, 2, 1), ()),
        (("bg", "anterior", "posterior"), (0, 1, 2), ()),
        (("bg", "L1", "left-right boundary"), (0, 1, 2), ()),  # no word "left" / both sides: not sided
        (("bg", "left lung"), (0, 1), ("left lung",)),
        # two left lungs: no unique partner for the right one either
        (("bg", "left lung", "lung left", "right lung"), (0, 1, 2, 3), ("left lung", "lung left", "right lung")),
    ],
)
def test_side_names_pair_by_their_words(names, swap, unpaired):
    lat = laterality(names)
    assert lat.swap == swap and lat.unpaired == unpaired
    assert lat.flips_left_right == (not unpaired)


def test_a_left_right_flip_swaps_the_sides_it_moves():
    images = torch.rand(3, 1, 4, 5, 6)
    labels = torch.randint(0, 3, (3, 4, 5, 6))
    allowed = torch.tensor([[False, False, True], [True, False, False], [False, True, False]])
    axis = torch.tensor([2, 0, 0])  # the third sample is flipped, but not along its left-right axis
    swap = torch.tensor([0, 2, 1])
    _, flipped = random_flip(
        images, labels, torch.Generator().manual_seed(0), p=1.0, allowed=allowed, mirror=(axis, swap)
    )
    assert torch.equal(flipped[0], swap[labels[0].flip(2)])
    assert torch.equal(flipped[1], swap[labels[1].flip(0)])
    assert torch.equal(flipped[2], labels[2].flip(1))


def _sided_hippocampus(shared_data, tmp_path, names):
    """A real crop whose foreground is split at the middle of its first
    image axis into a 'left' (low index) and a 'right' class."""
    source = find_pairs(shared_data / "hippocampus")[0]
    label = sitk.ReadImage(str(source.label))
    array = sitk.GetArrayFromImage(label)
    sided = np.zeros_like(array)
    half = array.shape[2] // 2
    sided[:, :, :half][array[:, :, :half] > 0] = 1
    sided[:, :, half:][array[:, :, half:] > 0] = 2
    out = sitk.GetImageFromArray(sided)
    out.CopyInformation(label)
    (tmp_path / "labels").mkdir()
    sitk.WriteImage(out, str(tmp_path / "labels" / "case.nii.gz"))
    pairs = [CasePair("case", source.image, tmp_path / "labels" / "case.nii.gz")]
    config = config_for_dataset(pairs, size="tiny", grid=(16, 16, 16), class_names=names)
    return config, SegmentationDataset(pairs, config.preprocessing)


def _one_epoch_trainer(config, data, run_dir):
    """A one-epoch trainer on the case, and the list its progress messages go to."""
    messages = []
    run_dir.mkdir()
    trainer = Trainer(
        config,
        data,
        data,
        TrainOptions(epochs=1, batch_size=1),
        run_dir,
        torch.device("cpu"),
        progress=lambda stage, fraction, message, **extra: messages.append(message),
    )
    return trainer, messages


def test_training_flips_keep_left_labels_on_the_left(shared_data, tmp_path):
    config, data = _sided_hippocampus(shared_data, tmp_path, ("background", "hippocampus_left", "hippocampus_right"))
    trainer, messages = _one_epoch_trainer(config, data, tmp_path / "run")
    image, labels = data[0]
    assert {1, 2} <= set(labels.unique().tolist())
    mirror = (trainer._left_right[[0]], trainer._side_swap)
    _, flipped = random_flip(
        image[None], labels[None], torch.Generator(), p=1.0, allowed=trainer._flip_allowed[[0]], mirror=mirror
    )
    axis = int(trainer._left_right[0])

    def centre(lab, cls):  # mean index of a class along the left-right axis
        return torch.nonzero(lab == cls)[:, axis].float().mean()

    assert not torch.equal(flipped[0], labels)  # it was flipped
    for cls in (1, 2):  # ... and each side's class stays on its side
        assert (centre(flipped[0], cls) < centre(flipped[0], 3 - cls)) == (
            centre(labels, cls) < centre(labels, 3 - cls)
        )
    trainer.fit()
    assert "left-right flips swap hippocampus_left <-> hippocampus_right" in messages
    training = read_config(tmp_path / "run" / "best.safetensors").training
    assert training["flip_side_swaps"] == [["hippocampus_left", "hippocampus_right"]]
    assert training["no_left_right_flips_for"] == []


def test_a_side_without_partner_is_never_flipped(shared_data, tmp_path):
    config, data = _sided_hippocampus(shared_data, tmp_path, ("background", "left lung", "trachea"))
    trainer, messages = _one_epoch_trainer(config, data, tmp_path / "run")
    assert trainer._flip_allowed.tolist() == [[False, False, False]] and trainer._side_swap is None
    image, labels = data[0]
    _, flipped = random_flip(image[None], labels[None], torch.Generator(), p=1.0, allowed=trainer._flip_allowed)
    assert torch.equal(flipped[0], labels)
    trainer.fit()
    assert "no flips at all: a side without a partner class in left lung" in messages
    assert read_config(tmp_path / "run" / "best.safetensors").training["no_left_right_flips_for"] == ["left lung"]
    # every axis asked for: all but the left-right one
    every = Trainer(config, data, data, TrainOptions(flip_axes="all"), tmp_path / "all", torch.device("cpu"))
    assert every._flip_allowed.tolist() == [[True, True, False]]


def test_2d_side_classes_keep_the_left_right_axis_out(shared_data, tmp_path):
    pairs = find_pairs(shared_data / "glas" / "train")[:1]
    config = config_for_dataset(pairs, size="tiny", grid=(16, 16), class_names=("background", "left gland"))
    data = SegmentationDataset(pairs, config.preprocessing)
    trainer = Trainer(config, data, data, TrainOptions(), tmp_path, torch.device("cpu"))
    assert trainer.flip_axes == "all" and trainer._flip_allowed.tolist() == [[True, False]]
    plain = config_for_dataset(pairs, size="tiny", grid=(16, 16), class_names=("background", "gland"))
    untouched = Trainer(plain, data, data, TrainOptions(), tmp_path / "plain", torch.device("cpu"))
    assert untouched._flip_allowed is None and untouched._side_swap is None
    assert "flip_side_swaps" not in untouched._side_record()
