"""Data sets with several raters (real LIDC slices), the patient-grouped split,
and the naming conventions that pair images with labels."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ldseg.cli.main import main
from ldseg.data.dataset import SegmentationDataset, case_group, describe_pairing, find_pairs, split_cases
from ldseg.data.preprocess import Preprocessing, labels_to_classes, prepare_label
from ldseg.errors import InputError
from ldseg.io.images import read_label
from ldseg.io.modelfile import load_model_file
from ldseg.training.presets import config_for_dataset
from ldseg.training.trainer import Trainer, TrainOptions

PATIENT = r"LIDC-IDRI-\d+"
RATERS = ("rater1", "rater2", "rater3", "rater4")
PRE = Preprocessing(dims=2, channels=1, grid=(32, 32), label_values=(0, 255))
# real slices: 0001 slice-0 has an empty rater2 mask, slice-8 three empty masks
SLICES = [f"LIDC-IDRI-0001_nodule-0_slice-{s}" for s in (0, 1, 7, 8)] + [
    f"LIDC-IDRI-0002_nodule-0_slice-{s}" for s in (0, 1)
]


def _error(func, *args, **kwargs) -> str:
    with pytest.raises(InputError) as err:
        func(*args, **kwargs)
    message = str(err.value)
    assert "\n" not in message
    return message


def lidc_subset(shared_data, root: Path, names=SLICES) -> Path:
    """A data set folder of links to real LIDC files (nothing copied)."""
    lidc = shared_data / "lidc"
    for folder in ("images", *RATERS):
        (root / folder).mkdir(parents=True)
        for name in names:
            (root / folder / f"{name}.png").symlink_to(lidc / folder / f"{name}.png")
    return root


@pytest.fixture
def lidc_pairs(shared_data, tmp_path):
    return find_pairs(lidc_subset(shared_data, tmp_path / "lidc"))


def test_the_real_lidc_folder_is_a_four_rater_data_set(shared_data):
    pairs = find_pairs(shared_data / "lidc")
    assert len(pairs) == 9029
    first = pairs[0]
    assert first.name == "LIDC-IDRI-0001_nodule-0_slice-0"
    assert [p.parent.name for p in first.labels] == list(RATERS)
    assert all(p.name == f"{first.name}.png" for p in first.labels)
    assert first.label == first.labels[0]
    assert describe_pairing(pairs) == (
        "9029 cases paired (9029 by same name); 4 raters per case (rater1, rater2, rater3, rater4)"
    )
    # split by patient: no patient on both sides, the last patients validate
    train, val = split_cases(pairs, 0.1, group_by=PATIENT)
    train_patients = {case_group(p.name, PATIENT) for p in train}
    val_patients = {case_group(p.name, PATIENT) for p in val}
    assert not train_patients & val_patients
    assert len(val_patients) == round(0.1 * len(train_patients | val_patients))
    assert min(val_patients) > max(train_patients)
    assert len(train) + len(val) == 9029


def test_group_split_on_names_and_its_errors():
    from ldseg.data.dataset import CasePair

    pairs = [CasePair(n, Path(n), Path(n)) for n in ("p1_a", "p1_b", "p2_a", "p3_a", "p3_b", "p3_c")]
    train, val = split_cases(pairs, 0.34, group_by=r"^[^_]+")  # 3 patients -> the last one validates
    assert [p.name for p in val] == ["p3_a", "p3_b", "p3_c"]
    # a group in the pattern names the part that counts
    train, val = split_cases(pairs, 0.34, group_by=r"p(\d)_")
    assert [p.name for p in val] == ["p3_a", "p3_b", "p3_c"]
    # without grouping the last 2 cases would validate and p3 would straddle
    assert [p.name for p in split_cases(pairs, 0.34)[1]] == ["p3_b", "p3_c"]
    assert "does not match" in _error(split_cases, pairs, 0.3, group_by="zz")
    assert "not a regular expression" in _error(split_cases, pairs, 0.3, group_by="(")


def test_training_draws_each_rater_reproducibly_and_keeps_empty_masks(lidc_pairs):
    data = SegmentationDataset(lidc_pairs, PRE)  # slice-8 has three empty masks: accepted
    assert data.raters == 4 and len(data) == len(SLICES)
    case = 0  # slice-0: rater2 marked nothing, the others did, differently
    expected = [
        prepare_label(read_label(p)[0], PRE, p.name) for p in lidc_pairs[case].labels
    ]  # each rater's map on the model grid
    assert expected[1].sum() == 0 and all(e.sum() > 0 for e in expected[2:])

    def which_rater(label):
        return next(r for r, e in enumerate(expected) if torch.equal(label, e))

    gen = torch.Generator().manual_seed(7)
    items = [data.training_item(case, gen) for _ in range(40)]
    assert all(label.dtype == torch.int64 and image.shape == (1, 32, 32) for image, label in items)
    draws = [which_rater(label) for _, label in items]
    assert set(draws) == {0, 1, 2, 3}  # every rater is drawn, the empty one too
    again = torch.Generator().manual_seed(7)
    assert [which_rater(data.training_item(case, again)[1]) for _ in range(40)] == draws
    # dataset[i] is the raters' consensus: foreground where at least 2 of the 4 mark it
    votes = torch.stack(expected).sum(dim=0)
    assert torch.equal(data[case][1], (votes >= 2).long())


def test_one_rater_data_sets_are_unchanged(shared_data):
    pairs = find_pairs(shared_data / "glas" / "train")[:2]
    assert pairs[0].labels == (pairs[0].label,) and pairs[0].rater_labels == ()
    pre = Preprocessing(dims=2, channels=3, grid=(32, 32), label_values=(0, 255))
    data = SegmentationDataset(pairs, pre)
    gen = torch.Generator().manual_seed(0)
    state = gen.get_state()
    image, label = data.training_item(0, gen)
    assert torch.equal(label, data[0][1]) and torch.equal(image, data[0][0])
    assert torch.equal(gen.get_state(), state)  # one rater: the random stream is untouched


def test_the_preset_sees_every_raters_labels(shared_data, tmp_path):
    # slice-8 of patient 0001 is empty for raters 1-3: the label values still come from rater4
    names = ["LIDC-IDRI-0001_nodule-0_slice-8"]
    pairs = find_pairs(lidc_subset(shared_data, tmp_path / "one", names))
    assert np.unique(read_label(pairs[0].label)[0]).tolist() == [0]
    config = config_for_dataset(pairs, size="tiny", grid=(32, 32))
    assert config.preprocessing.label_values == (0, 255)


def test_multi_rater_training_resumes_exactly(lidc_pairs, tmp_path):
    config = config_for_dataset(lidc_pairs, size="tiny", grid=(32, 32))
    data = SegmentationDataset(lidc_pairs, config.preprocessing)
    options = dict(batch_size=3, validate_every=10, seed=3)
    for run in ("a", "b"):
        (tmp_path / run).mkdir()
    straight = Trainer(config, data, None, TrainOptions(epochs=2, **options), tmp_path / "a", torch.device("cpu"))
    straight.fit()
    first = Trainer(config, data, None, TrainOptions(epochs=1, **options), tmp_path / "b", torch.device("cpu"))
    first.fit()
    resumed = Trainer(config, data, None, TrainOptions(epochs=2, **options), tmp_path / "b", torch.device("cpu"))
    assert resumed.resume()
    resumed.fit()
    _, a = load_model_file(tmp_path / "a" / "last.safetensors")
    _, b = load_model_file(tmp_path / "b" / "last.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_train_and_evaluate_on_raters_from_the_command_line(shared_data, tmp_path, capsys):
    data = lidc_subset(shared_data, tmp_path / "lidc")
    model = tmp_path / "lidc.safetensors"
    args = ["train", str(data), "-o", str(model), "--size", "tiny", "--grid", "32", "32", "--epochs", "1"]
    args += ["--batch-size", "3", "--val-fraction", "0.3", "--group-by", PATIENT, "--progress", "json"]
    assert main([*args, "--device", "cpu"]) == 0
    events = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert any(e["stage"] == "info" and "4 raters per case" in e["message"] for e in events)
    config, _ = load_model_file(model)
    # two patients, 30 %: the last patient validates, whole
    assert config.training["val_names"] == [n for n in SLICES if n.startswith("LIDC-IDRI-0002")]

    out = tmp_path / "eval"
    argv = ["evaluate", str(model), str(data), "-o", str(out), "--samples", "4", "--progress", "none"]
    assert main([*argv, "--device", "cpu"]) == 0
    import csv

    rows = list(csv.DictReader((out / "cases.csv").open()))
    assert [r["case"] for r in rows] == sorted(SLICES)
    for row in rows:
        assert 0 <= float(row["ged"]) <= 2 and 0 <= float(row["hm_iou"]) <= 1
        assert 0 <= float(row["ece"]) <= 1 and float(row["rater_diversity"]) >= 0
    report = json.loads((out / "summary.json").read_text())
    assert report["raters"]["count"] == 4 and report["raters"]["uncertainty_map"] == "sd"
    assert {"ged", "hm_iou", "sample_diversity", "dice_mean"} <= set(report["summary"])
    assert (out / "reliability.png").read_bytes()[:4] == b"\x89PNG"
    # the rater diversity of a case is the raters' own: computed here from the files
    from ldseg.evaluation.distribution import diversity

    case = next(r for r in rows if r["case"] == SLICES[0])
    stack = [labels_to_classes(read_label(data / r / f"{SLICES[0]}.png")[0], config.preprocessing, r) for r in RATERS]
    assert float(case["rater_diversity"]) == pytest.approx(diversity(stack))


def test_the_evaluated_samples_are_the_ones_whose_mean_segment_gives(shared_data, tmp_path):
    from conftest import make_model_file

    from ldseg.config import SegmentOptions
    from ldseg.evaluation.sampled import sample_segmentations
    from ldseg.inference.segmenter import Segmenter
    from ldseg.io.images import read_image

    model = make_model_file(tmp_path / "m.safetensors", dims=2, grid=(32, 32), label_values=(0, 255))
    segmenter = Segmenter(model, device="cpu", precision="fp32")
    image = read_image(shared_data / "lidc" / "images" / f"{SLICES[1]}.png")
    sampled = sample_segmentations(segmenter, image, SegmentOptions(samples=5, seed=11))
    result = segmenter.segment(image, samples=5, seed=11)  # keeping the samples changes nothing
    assert sampled.samples.shape == (5, 128, 128)
    np.testing.assert_array_equal(sampled.probabilities, result.probabilities)
    np.testing.assert_array_equal(sampled.uncertainty, result.sd)
    # the samples differ from each other (diffusion draws), unlike a copy of one map
    assert len({s.tobytes() for s in sampled.samples}) > 1
    # where every sample says the same class, their mean says it too
    unanimous = (sampled.samples == sampled.samples[0]).all(axis=0)
    assert unanimous.any()
    np.testing.assert_array_equal(sampled.classes[unanimous], sampled.samples[0][unanimous])


# -- naming conventions (issue 12: data sets as users bring them) -----------------


def _touch(root: Path, *names):
    """Empty files (pairing looks at names only)."""
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")


def test_label_and_nnunet_suffixes_pair_and_say_so(tmp_path):
    _touch(tmp_path, "images/Case1.nii.gz", "labels/Case1_label.nii.gz")
    _touch(tmp_path, "images/Case2.nii.gz", "labels/Case2_seg.nrrd")
    _touch(tmp_path, "images/Case3.nii.gz", "labels/Case3_mask.nii.gz")
    _touch(tmp_path, "images/Case4_0000.nii.gz", "labels/Case4.nii.gz")
    _touch(tmp_path, "images/Case5.nii.gz", "labels/Case5.nii.gz")
    pairs = find_pairs(tmp_path)
    assert [p.name for p in pairs] == ["Case1", "Case2", "Case3", "Case4", "Case5"]
    assert [p.label.name for p in pairs] == [
        "Case1_label.nii.gz",
        "Case2_seg.nrrd",
        "Case3_mask.nii.gz",
        "Case4.nii.gz",
        "Case5.nii.gz",
    ]
    assert pairs[3].image.name == "Case4_0000.nii.gz"
    assert [p.pairing for p in pairs] == [
        "label suffix _label",
        "label suffix _seg",
        "label suffix _mask",
        "image suffix _0000",
        "same name",
    ]
    line = describe_pairing(pairs)
    assert line.startswith("5 cases paired (") and "1 by image suffix _0000" in line and "\n" not in line


def test_labels_beside_the_images_in_one_folder(tmp_path):
    _touch(tmp_path, "Case1.png", "Case1_label.png", "Case2.png", "Case2_seg.png", "notes.txt")
    pairs = find_pairs(tmp_path)
    assert [(p.name, p.image.name, p.label.name) for p in pairs] == [
        ("Case1", "Case1.png", "Case1_label.png"),
        ("Case2", "Case2.png", "Case2_seg.png"),
    ]
    _touch(tmp_path, "Case3.png")
    assert "Case3.png" in _error(find_pairs, tmp_path)


@pytest.mark.parametrize(
    "files, words",
    [
        # two labels for one image
        (("images/Case1.nii.gz", "labels/Case1_seg.nii.gz", "labels/Case1_mask.nii.gz"), "could each be the label"),
        # a same-name label and a suffixed one
        (("images/Case1.nii.gz", "labels/Case1.nii.gz", "labels/Case1_seg.nii.gz"), "could each be the label"),
        # two images for one case
        (("images/Case1.nii.gz", "images/Case1_0000.nii.gz", "labels/Case1_seg.nii.gz"), "both the image"),
        # one rater or several?
        (("images/a.png", "labels/a.png", "rater1/a.png", "rater2/a.png"), "labels/ and rater folders"),
        # a rater who has no label for an image
        (("images/a.png", "images/b.png", "rater1/a.png", "rater1/b.png", "rater2/a.png"), "b.png"),
    ],
)
def test_ambiguous_or_incomplete_pairings_are_refused(tmp_path, files, words):
    _touch(tmp_path, *files)
    assert words in _error(find_pairs, tmp_path)


def test_rater_folders_in_natural_order_and_named_labels_x(tmp_path):
    _touch(tmp_path, "images/a.png", "rater10/a.png", "rater2/a.png", "rater1/a.png")
    assert [p.parent.name for p in find_pairs(tmp_path)[0].labels] == ["rater1", "rater2", "rater10"]
    other = tmp_path / "other"
    _touch(other, "images/a.png", "labels-anna/a_seg.png", "labels-ben/a.png")
    pair = find_pairs(other)[0]
    assert [p.parent.name for p in pair.labels] == ["labels-anna", "labels-ben"]
    assert pair.pairing == "label suffix _seg; same name"


def test_train_refuses_a_bad_group_pattern_in_one_line(shared_data, tmp_path, capsys):
    data = lidc_subset(shared_data, tmp_path / "lidc", SLICES[:2])
    model = tmp_path / "m.safetensors"
    code = main(["train", str(data), "-o", str(model), "--group-by", "PATIENT-(", "--progress", "none"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert "not a regular expression" in err and "\n" not in err
    assert not model.exists() and not (tmp_path / "m.run").exists()


def test_a_deterministic_model_is_measured_by_copies_of_its_one_output(shared_data, tmp_path):
    from ldseg.architectures import build_network
    from ldseg.config import ModelConfig
    from ldseg.evaluation.distribution import generalized_energy_distance, hungarian_matched_iou
    from ldseg.inference.segmenter import Segmenter
    from ldseg.io.modelfile import save_model
    from ldseg.training.presets import network_preset

    torch.manual_seed(0)
    config = ModelConfig(
        preprocessing=PRE,
        class_names=("background", "nodule"),
        network=network_preset("tiny"),
        architecture="resunet",
    )
    model = tmp_path / "baseline.safetensors"
    save_model(model, config, build_network(config).state_dict())
    data = lidc_subset(shared_data, tmp_path / "lidc", SLICES[:2])
    out = tmp_path / "eval"
    argv = ["evaluate", str(model), str(data), "-o", str(out), "--samples", "4", "--progress", "none"]
    assert main([*argv, "--device", "cpu"]) == 0
    import csv

    rows = list(csv.DictReader((out / "cases.csv").open()))
    report = json.loads((out / "summary.json").read_text())
    assert report["raters"]["uncertainty_map"] == "1 - max probability"
    assert report["samples"] == 1 and report["raters"]["compared_samples"] == 4
    # its one output against the four raters, computed here from segment and the files
    result = Segmenter(model, device="cpu").segment(data / "images" / f"{SLICES[0]}.png")
    stack = [labels_to_classes(read_label(data / r / f"{SLICES[0]}.png")[0], PRE, r) for r in RATERS]
    assert float(rows[0]["ged"]) == pytest.approx(generalized_energy_distance([result.classes], stack))
    assert float(rows[0]["hm_iou"]) == pytest.approx(hungarian_matched_iou([result.classes], stack))
    assert float(rows[0]["sample_diversity"]) == 0.0
