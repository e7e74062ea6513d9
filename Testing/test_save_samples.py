"""``ldseg segment --save-samples``: every sample's label map in the result set,
on the input's geometry, consistent with the labels and SD of the same run, and
nothing changed when it is not asked for."""

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from ldseg.cli.main import build_parser, main
from ldseg.cli.options import segment_options
from ldseg.errors import OutputError
from ldseg.inference.segmenter import SegmentationResult
from ldseg.io.export import write_result
from ldseg.io.images import Geometry, MedicalImage, read_image

MODEL = Path(__file__).resolve().parents[1] / "Resources" / "Models" / "hippocampus.safetensors"
N = 3


def _segment(src, out, *extra):
    argv = ["segment", str(src), "-o", str(out), "--model", str(MODEL), "--samples", str(N), "--seed", "5"]
    return main([*argv, "--progress", "none", "--device", "cpu", *extra])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The shipped hippocampus model on a real case, with and without --save-samples (same seed)."""
    src = Path(__file__).resolve().parents[2] / "shared" / "data" / "hippocampus" / "images" / "hippocampus_001.nii.gz"
    if not src.is_file():
        pytest.skip(f"hippocampus data not found at {src}")
    with_samples, without = tmp_path_factory.mktemp("with"), tmp_path_factory.mktemp("without")
    assert _segment(src, with_samples, "--save-samples") == 0
    assert _segment(src, without) == 0
    return src, with_samples, without


def _manifest(folder):
    (path,) = folder.glob("*_result.json")
    return json.loads(path.read_text())


def test_samples_file_holds_every_sample_on_the_input_geometry(runs):
    src, out, _ = runs
    manifest = _manifest(out)
    path = Path(manifest["files"]["samples"])
    assert path == out / "hippocampus_001_samples.nii.gz" and path.is_file()
    image, reference = sitk.ReadImage(str(path)), sitk.ReadImage(str(src))
    assert image.GetNumberOfComponentsPerPixel() == N == manifest["samples"]
    assert image.GetPixelID() == sitk.sitkVectorUInt8
    assert image.GetSize() == reference.GetSize()
    np.testing.assert_allclose(image.GetSpacing(), reference.GetSpacing(), atol=1e-6)
    np.testing.assert_allclose(image.GetOrigin(), reference.GetOrigin(), atol=1e-5)
    np.testing.assert_allclose(image.GetDirection(), reference.GetDirection(), atol=1e-6)
    # read back like the other outputs: one channel per sample, each a map of the model's label values
    samples = read_image(path)
    labels = read_image(manifest["files"]["labels"])
    assert samples.array.shape == (N, *labels.spatial_shape)
    assert set(np.unique(samples.array).tolist()) <= {c["label_value"] for c in manifest["classes"]}


def test_samples_agree_with_the_labels_and_the_sd_of_the_same_run(runs):
    _, out, _ = runs
    manifest = _manifest(out)
    samples = read_image(manifest["files"]["samples"]).array.astype(np.int64)
    labels = read_image(manifest["files"]["labels"]).array[0].astype(np.int64)
    sd = read_image(manifest["files"]["sd"]).array[0]
    unanimous = (samples == samples[0]).all(axis=0)
    # all samples voting one class: the mean probability's arg-max is that class too
    assert (labels[unanimous] != samples[0][unanimous]).mean() < 1e-3
    # where the samples disagree they differ: the SD there is not zero
    assert (~unanimous).any(), "3 samples of the shipped model disagree somewhere"
    assert (sd[~unanimous] > 0).all()
    # the labeled class is the most frequent one almost everywhere (frequency = mean of one-hot)
    values = [c["label_value"] for c in manifest["classes"]]
    frequency = np.stack([(samples == v).mean(axis=0) for v in values])
    np.testing.assert_allclose(frequency.sum(axis=0), 1.0)
    label_frequency = np.take_along_axis(frequency, np.searchsorted(values, labels)[None], axis=0)[0]
    assert (label_frequency >= frequency.max(axis=0) - 1e-9).mean() > 0.99


def test_without_the_flag_nothing_changes(runs):
    _, with_samples, without = runs
    assert sorted(p.name for p in without.iterdir()) == sorted(
        f"hippocampus_001_{k}"
        for k in ("labels.nii.gz", "sd.nii.gz", "probabilities.nii.gz", "preview.png", "result.json")
    )
    assert "samples" not in _manifest(without)["files"]
    for kind in ("labels", "sd", "probabilities"):  # keeping the samples does not change the sampling
        a = sitk.GetArrayFromImage(sitk.ReadImage(_manifest(with_samples)["files"][kind]))
        b = sitk.GetArrayFromImage(sitk.ReadImage(_manifest(without)["files"][kind]))
        np.testing.assert_array_equal(a, b)


def test_asking_for_samples_over_an_existing_set_is_refused_writing_nothing(runs, capsys):
    src, _, without = runs
    before = {p.name: p.stat().st_mtime_ns for p in without.iterdir()}
    assert _segment(src, without, "--save-samples") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already exist" in err[0] and "--overwrite" in err[0]
    assert {p.name: p.stat().st_mtime_ns for p in without.iterdir()} == before


def test_the_flag_comes_from_the_config_and_evaluate_has_none():
    parser = build_parser()
    assert segment_options(parser.parse_args(["segment", "i.nii.gz", "-o", "o"])).save_samples is False
    assert segment_options(parser.parse_args(["segment", "i.nii.gz", "-o", "o", "--save-samples"])).save_samples
    assert segment_options(parser.parse_args(["evaluate", "m", "d"])).save_samples is False
    with pytest.raises(SystemExit):
        parser.parse_args(["evaluate", "m", "d", "--save-samples"])  # evaluate writes no result sets


def test_writing_samples_that_were_not_kept_is_refused(tmp_path):
    from ldseg.io.modelheader import read_config

    shape = (4, 5, 6)
    result = SegmentationResult(
        labels=np.zeros(shape, np.uint8),
        classes=np.zeros(shape, np.uint8),
        probabilities=np.zeros((3, *shape), np.float32),
        sd=np.zeros(shape, np.float32),
        geometry=Geometry.identity(3),
        samples=2,
        sampler="ddim",
        steps=2,
        device="cpu",
    )
    image = MedicalImage(array=np.zeros((1, *shape), np.float32), geometry=Geometry.identity(3), source=None)
    with pytest.raises(OutputError, match="not kept"):
        write_result(result, image, tmp_path / "out", read_config(MODEL), samples=True)
    assert not (tmp_path / "out").exists()
