"""Image I/O: geometry-preserving round trips, formats, errors, atomicity."""

import os
import time

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from ldseg.errors import InputError, OutputError
from ldseg.io import images as imageio
from ldseg.io.images import (
    Geometry,
    MedicalImage,
    is_image_path,
    read_image,
    read_label,
    split_extension,
    write_image,
    write_segmentation_nrrd,
)

SAMPLE_VOLUMES = [
    "brain1_image.nrrd",
    "breast1_image.nrrd",
    "prostate_phantom_subvolume.nrrd",
]


def _assert_geometry_equal(a: Geometry, b: Geometry, tol=1e-6):
    np.testing.assert_allclose(a.spacing, b.spacing, atol=tol)
    np.testing.assert_allclose(a.origin, b.origin, atol=tol)
    np.testing.assert_allclose(a.direction, b.direction, atol=tol)


def _one_line(exc_info) -> str:
    message = str(exc_info.value)
    assert "\n" not in message
    return message


# -- paths ----------------------------------------------------------------


def test_split_extension(tmp_path):
    assert split_extension("a/case1.nii.gz") == ("case1", ".nii.gz")
    assert split_extension("x.seg.nrrd") == ("x", ".seg.nrrd")
    assert split_extension("case.1.nrrd") == ("case.1", ".nrrd")
    assert split_extension("train_1.PNG") == ("train_1", ".PNG")
    folder = tmp_path / "dicomdir"
    folder.mkdir()
    assert split_extension(folder) == ("dicomdir", "")
    assert is_image_path(folder)
    assert is_image_path("a.nii.gz") and is_image_path("b.MHA")
    assert not is_image_path("notes.txt")


def test_geometry_basics():
    ident = Geometry.identity(3)
    assert ident.dims == 3
    assert ident.direction == (1, 0, 0, 0, 1, 0, 0, 0, 1)
    moved = Geometry((1, 1, 1), (0, 0, 1e-3), ident.direction)
    assert not ident.matches(moved)
    assert ident.matches(moved, tol=1e-2)
    assert not ident.matches(Geometry.identity(2))


# -- round trips on real data ------------------------------------------------


@pytest.mark.parametrize("ext", [".nrrd", ".nii.gz", ".mha"])
def test_sample_volumes_round_trip(shared_data, tmp_path, ext):
    directions = []
    for filename in SAMPLE_VOLUMES:
        image = read_image(shared_data / "samples" / filename)
        assert image.dims == 3 and image.channels == 1
        assert image.array.dtype == np.float32
        directions.append(image.geometry.direction)
        out = tmp_path / (split_extension(filename)[0] + ext)
        write_image(image.array[0], image.geometry, out)
        back = read_image(out)
        np.testing.assert_array_equal(back.array, image.array)
        _assert_geometry_equal(back.geometry, image.geometry)
    identity = Geometry.identity(3).direction
    assert any(not np.allclose(d, identity) for d in directions)


def test_sample_spacing_is_anisotropic(shared_data):
    image = read_image(shared_data / "samples" / "prostate_phantom_subvolume.nrrd")
    assert image.geometry.spacing == (0.5, 0.5, 3.0)
    assert image.spatial_shape == (13, 67, 82)  # numpy order (z, y, x)


def test_label_round_trip_keeps_values(shared_data, tmp_path):
    labels, geometry = read_label(shared_data / "samples" / "prostate_phantom_subvolume-label.nrrd")
    assert labels.dtype == np.int64
    assert set(np.unique(labels)) == {0, 1, 7, 8, 9}
    write_image(labels.astype(np.uint8), geometry, tmp_path / "l.nii.gz")
    back, back_geometry = read_label(tmp_path / "l.nii.gz")
    np.testing.assert_array_equal(back, labels)
    _assert_geometry_equal(back_geometry, geometry)


def test_glas_png_rgb_and_label(shared_data):
    image = read_image(shared_data / "glas" / "train" / "images" / "train_1.png")
    assert image.array.shape == (3, 522, 775)
    assert image.dims == 2 and image.name == "train_1.png"
    labels, geometry = read_label(shared_data / "glas" / "train" / "labels" / "train_1.png")
    assert labels.shape == (522, 775)
    assert set(np.unique(labels)) == {0, 255}
    assert geometry.matches(Geometry.identity(2))


def test_hippocampus_nifti_is_3d(shared_data):
    image = read_image(shared_data / "hippocampus" / "images" / "hippocampus_001.nii.gz")
    assert image.dims == 3 and image.channels == 1
    assert image.spatial_shape == (35, 51, 35)
    labels, _ = read_label(shared_data / "hippocampus" / "labels" / "hippocampus_003.nii.gz")  # stored as float32
    assert labels.dtype == np.int64
    assert set(np.unique(labels)) <= {0, 1, 2}


def test_vector_image_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    array = rng.random((3, 4, 5, 6)).astype(np.float32)
    geometry = Geometry((0.5, 0.7, 2.0), (1, 2, 3), Geometry.identity(3).direction)
    write_image(array, geometry, tmp_path / "v.nrrd")
    back = read_image(tmp_path / "v.nrrd")
    np.testing.assert_array_equal(back.array, array)
    rgb = rng.integers(0, 255, (3, 8, 9), dtype=np.uint8)
    write_image(rgb, Geometry.identity(2), tmp_path / "rgb.png")
    np.testing.assert_array_equal(read_image(tmp_path / "rgb.png").array, rgb)


def test_single_slice_volume_stays_3d(tmp_path):
    image = sitk.GetImageFromArray(np.arange(12, dtype=np.int16).reshape(1, 3, 4))
    sitk.WriteImage(image, str(tmp_path / "slice.nii.gz"))
    assert read_image(tmp_path / "slice.nii.gz").array.shape == (1, 1, 3, 4)


def test_rgba_drops_alpha_and_gray_rgb_label(tmp_path):
    rgba = np.zeros((6, 7, 4), dtype=np.uint8)
    rgba[..., 3] = 255
    rgba[2:4, 2:5, :3] = 200
    sitk.WriteImage(sitk.GetImageFromArray(rgba, isVector=True), str(tmp_path / "mask.png"))
    assert read_image(tmp_path / "mask.png").array.shape == (3, 6, 7)
    labels, _ = read_label(tmp_path / "mask.png")
    assert set(np.unique(labels)) == {0, 200}
    rgba[0, 0, 0] = 9  # channels now differ -> not a label map
    sitk.WriteImage(
        sitk.GetImageFromArray(rgba, isVector=True),
        str(tmp_path / "color.png"),
    )
    with pytest.raises(InputError, match="color.png"):
        read_label(tmp_path / "color.png")


def test_float_labels(tmp_path):
    geometry = Geometry.identity(3)
    write_image(
        np.array([[[0.0, 1.0], [2.0, 1.0]]], np.float32),
        geometry,
        tmp_path / "ok.nrrd",
    )
    labels, _ = read_label(tmp_path / "ok.nrrd")
    assert labels.dtype == np.int64 and labels.tolist() == [[[0, 1], [2, 1]]]
    write_image(
        np.array([[[0.0, 0.5], [2.0, 1.0]]], np.float32),
        geometry,
        tmp_path / "bad.nrrd",
    )
    with pytest.raises(InputError) as err:
        read_label(tmp_path / "bad.nrrd")
    assert "bad.nrrd" in _one_line(err) and "0.5" in str(err.value)


def test_nii_gz_beside_nii_reads_its_own_voxels(tmp_path):
    # ITK's NIfTI library would read case.nii's voxels for case.nii.gz.
    geometry = Geometry.identity(3)
    write_image(np.full((2, 3, 4), 1, np.uint8), geometry, tmp_path / "c.nii")
    write_image(np.full((2, 3, 4), 2, np.int16), geometry, tmp_path / "c.nii.gz")
    assert read_image(tmp_path / "c.nii.gz").array.max() == 2
    assert read_label(tmp_path / "c.nii.gz")[0].min() == 2
    assert read_image(tmp_path / "c.nii").array.max() == 1


def test_nifti_4d_becomes_channels(tmp_path):
    data = np.random.default_rng(1).random((5, 6, 7, 2)).astype(np.float32)
    nib.save(
        nib.Nifti1Image(data, np.diag([2.0, 2.0, 3.0, 1.0])),
        str(tmp_path / "multi.nii.gz"),
    )
    image = read_image(tmp_path / "multi.nii.gz")
    assert image.array.shape == (2, 7, 6, 5)
    np.testing.assert_allclose(image.array[1], data[..., 1].T)
    np.testing.assert_allclose(image.geometry.spacing, (2, 2, 3))


def test_sheared_nifti_is_refused_clearly(tmp_path):
    """A shear cannot be kept in spacing + rotation; the nearest rotation
    would misplace the result by millimetres, so the file is refused."""
    affine = np.array([[1.0, 0.3, 0, 0], [0, 1.0, 0, 0], [0, 0, 2.0, 5.0], [0, 0, 0, 1]])
    data = np.arange(60, dtype=np.int16).reshape(3, 4, 5)
    img = nib.Nifti1Image(data, affine)
    img.set_qform(None, code=0)
    img.set_sform(affine, code=2)
    nib.save(img, str(tmp_path / "shear.nii"))
    with pytest.raises(InputError, match="shear.nii: the NIfTI affine is sheared"):
        read_image(tmp_path / "shear.nii")


# -- DICOM --------------------------------------------------------------------


def _write_dicom_series(volume: sitk.Image, folder):
    """Per-slice DICOM writing with the tags a series reader needs."""
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    stamp = time.strftime("%H%M%S")
    direction = volume.GetDirection()
    orientation = "\\".join(str(v) for v in (*direction[0::3], *direction[1::3]))
    series_uid = "1.2.826.0.1.3680043.2.1125." + stamp + ".1"
    for k in range(volume.GetDepth()):
        slice_k = volume[:, :, k]
        tags = {
            "0008|0060": "MR",
            "0020|000e": series_uid,
            "0020|000d": series_uid + ".9",
            "0008|0018": f"{series_uid}.{k + 1}",
            "0020|0037": orientation,
            "0020|0032": "\\".join(str(v) for v in volume.TransformIndexToPhysicalPoint((0, 0, k))),
            "0020|0013": str(k + 1),
            "0018|0050": str(volume.GetSpacing()[2]),
        }
        for key, value in tags.items():
            slice_k.SetMetaData(key, value)
        writer.SetFileName(str(folder / f"slice{k:03d}.dcm"))
        writer.Execute(slice_k)


def test_dicom_series_folder(tmp_path):
    array = np.random.default_rng(2).integers(0, 1000, (4, 6, 5)).astype(np.int16)
    volume = sitk.GetImageFromArray(array)
    volume.SetSpacing((0.8, 0.9, 2.5))
    volume.SetOrigin((10.0, -20.0, 30.0))
    volume.SetDirection((0, 1, 0, -1, 0, 0, 0, 0, 1))
    folder = tmp_path / "series"
    folder.mkdir()
    _write_dicom_series(volume, folder)
    image = read_image(folder)
    assert image.name == "series"
    np.testing.assert_array_equal(image.array[0], array)
    _assert_geometry_equal(image.geometry, Geometry.from_sitk(volume), tol=1e-4)


def test_folder_without_dicom(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("hi")
    with pytest.raises(InputError) as err:
        read_image(tmp_path / "empty")
    assert "empty" in _one_line(err) and "DICOM" in str(err.value)


# -- read errors --------------------------------------------------------------


def test_read_errors_name_the_file(tmp_path):
    with pytest.raises(InputError) as err:
        read_image(tmp_path / "missing.nii.gz")
    assert "missing.nii.gz" in _one_line(err)
    (tmp_path / "table.csv").write_text("a,b")
    with pytest.raises(InputError) as err:
        read_image(tmp_path / "table.csv")
    assert "table.csv" in _one_line(err) and "unsupported" in str(err.value)
    (tmp_path / "broken.nii.gz").write_bytes(b"not an image at all" * 10)
    with pytest.raises(InputError) as err:
        read_image(tmp_path / "broken.nii.gz")
    assert "broken.nii.gz" in _one_line(err)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    with pytest.raises(InputError) as err:
        read_label(tmp_path / "broken.png")
    assert "broken.png" in _one_line(err)


# -- writing: safety ----------------------------------------------------------


def test_refuses_to_overwrite_input(shared_data, tmp_path):
    source = shared_data / "samples" / "breast1_label.nrrd"
    copy = tmp_path / "input.nrrd"
    copy.write_bytes(source.read_bytes())
    before = copy.read_bytes()
    labels, geometry = read_label(copy)
    with pytest.raises(OutputError) as err:
        write_image(labels.astype(np.uint8), geometry, copy, reference_path=copy)
    assert "input.nrrd" in _one_line(err)
    # Same file through another spelling of the path.
    with pytest.raises(OutputError):
        write_image(
            labels.astype(np.uint8),
            geometry,
            tmp_path / "." / "input.nrrd",
            reference_path=str(copy),
        )
    assert copy.read_bytes() == before


def test_failure_mid_write_leaves_nothing(tmp_path, monkeypatch):
    target = tmp_path / "out.nii.gz"

    def broken_write(image, path, compress):
        with open(path, "wb") as handle:
            handle.write(b"partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(imageio, "_write_sitk", broken_write)
    with pytest.raises(OutputError) as err:
        write_image(np.zeros((3, 3, 3), np.uint8), Geometry.identity(3), target)
    assert "out.nii.gz" in _one_line(err) and "disk full" in str(err.value)
    assert os.listdir(tmp_path) == []


def test_failure_keeps_previous_output(tmp_path, monkeypatch):
    target = tmp_path / "out.nrrd"
    write_image(np.ones((2, 2, 2), np.uint8), Geometry.identity(3), target)
    before = target.read_bytes()

    def broken_write(image, path, compress):
        open(path, "wb").close()
        raise RuntimeError("boom")

    monkeypatch.setattr(imageio, "_write_sitk", broken_write)
    with pytest.raises(OutputError):
        write_image(np.zeros((2, 2, 2), np.uint8), Geometry.identity(3), target)
    assert target.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["out.nrrd"]


def test_missing_or_unwritable_folder(tmp_path, monkeypatch):
    geometry = Geometry.identity(2)
    array = np.zeros((4, 4), np.uint8)
    with pytest.raises(OutputError) as err:
        write_image(array, geometry, tmp_path / "nope" / "x.png")
    assert "does not exist" in _one_line(err)
    # Permission bits do not stop root, so simulate the access check.
    real_access = os.access
    monkeypatch.setattr(
        imageio.os,
        "access",
        lambda p, mode: False if mode & os.W_OK else real_access(p, mode),
    )
    with pytest.raises(OutputError) as err:
        write_image(array, geometry, tmp_path / "x.png")
    assert "not writable" in _one_line(err)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permissions")
def test_read_only_folder_for_real(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(OutputError):
            write_image(
                np.zeros((4, 4), np.uint8),
                Geometry.identity(2),
                folder / "x.png",
            )
    finally:
        folder.chmod(0o700)


def test_write_format_errors(tmp_path):
    with pytest.raises(OutputError, match="x.jpg"):
        write_image(
            np.zeros((4, 4), np.uint8),
            Geometry.identity(2),
            tmp_path / "x.jpg",
        )
    with pytest.raises(OutputError, match="PNG"):
        write_image(
            np.full((4, 4), 0.5, np.float32),
            Geometry.identity(2),
            tmp_path / "x.png",
        )


# -- Slicer segmentation ------------------------------------------------------


def test_write_segmentation_nrrd(shared_data, tmp_path):
    labels, geometry = read_label(shared_data / "samples" / "prostate_phantom_subvolume-label.nrrd")
    segments = [
        {"name": "Gland", "color": (255, 0, 0), "label_value": 1},
        {"name": "Zone 7", "color": (0, 128, 255), "label_value": 7},
    ]
    out = tmp_path / "pred.seg.nrrd"
    write_segmentation_nrrd(labels, geometry, out, segments)
    header = out.read_bytes().split(b"\n\n", 1)[0].decode()
    assert "Segmentation_MasterRepresentation:=Binary labelmap" in header
    assert "Segment0_Name:=Gland" in header
    assert "Segment1_Name:=Zone 7" in header
    assert "Segment0_Color:=1 0 0" in header
    assert "Segment1_Color:=0 0.501961 1" in header
    assert "Segment1_LabelValue:=7" in header
    assert "Segment0_Layer:=0" in header
    assert "Segment0_ID:=" in header and "Segment0_Extent:=" in header
    back, back_geometry = read_label(out)
    np.testing.assert_array_equal(back, labels)
    _assert_geometry_equal(back_geometry, geometry)


def test_write_segmentation_nrrd_2d(tmp_path):
    labels = np.zeros((5, 6), np.uint8)
    labels[1:3, 2:4] = 1
    out = tmp_path / "mask.seg.nrrd"
    write_segmentation_nrrd(
        labels,
        Geometry.identity(2),
        out,
        [{"name": "Gland", "color": (0, 255, 0), "label_value": 1}],
    )
    back, geometry = read_label(out)
    assert back.shape == (1, 5, 6) and geometry.dims == 3
    header = out.read_bytes().split(b"\n\n", 1)[0].decode()
    assert "Segment0_Extent:=2 3 1 2 0 0" in header


def test_medical_image_properties():
    image = MedicalImage(np.zeros((3, 4, 5), np.float32), Geometry.identity(2))
    assert (image.dims, image.channels, image.spatial_shape, image.name) == (
        2,
        3,
        (4, 5),
        "<array>",
    )
