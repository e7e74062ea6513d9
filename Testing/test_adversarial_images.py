"""Images as a hostile or careless user brings them (issue 12, items 3, 6, 9,
10, 15 and 17): damaged files are refused with one line instead of being
segmented as zeros, nothing hangs or allocates what the file cannot hold,
and a full disk never leaves a short file behind."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from ldseg.errors import InputError
from ldseg.inference.segmenter import Segmenter
from ldseg.io.images import Geometry, MedicalImage, read_image, read_label, write_image

HIPPO = "hippocampus_001.nii.gz"


def _ldseg(*args, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "ldseg", *map(str, args)], capture_output=True, text=True, timeout=timeout
    )


def _max_rss_mb(script: str) -> float:
    """Peak memory of a Python process running ``script`` (which must succeed).

    VmHWM, not getrusage's ru_maxrss: Linux carries the forking parent's peak
    (pytest's, over 1 GB late in the suite) into ru_maxrss across exec."""
    code = script + (
        "\nfrom pathlib import Path\n"
        "hwm = [line for line in Path('/proc/self/status').read_text().splitlines() if line.startswith('VmHWM')]\n"
        "print('RSS', int(hwm[0].split()[1]) / 1024)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return float(proc.stdout.split("RSS")[-1])


@pytest.fixture
def hippo_image(shared_data):
    return shared_data / "hippocampus" / "images" / HIPPO


# -- item 3: truncated, non-finite, sheared --------------------------------------


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated_nifti_is_refused(hippo_image, tmp_path, suffix, keep):
    img = nib.load(str(hippo_image))
    full = tmp_path / f"full{suffix}"
    nib.save(img, str(full))
    data = full.read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(InputError, match="truncated") as info:
        read_image(cut)
    assert "\n" not in str(info.value)
    with pytest.raises(InputError, match="truncated"):
        read_label(cut)
    assert read_image(full).array.shape[1:] == img.shape[::-1]  # the whole file still reads


def test_truncated_nifti_is_not_segmented(hippo_image, tiny_3d_model, tmp_path):
    data = hippo_image.read_bytes()
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(data[: len(data) * 2 // 3])
    proc = _ldseg("segment", cut, "-o", tmp_path / "out", "--model", tiny_3d_model, "--progress", "none")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "truncated" in proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_nifti_voxels_are_seen(hippo_image, tiny_3d_model, tmp_path, value):
    """ITK reads NaN/Inf float NIfTI voxels as 0; what is really stored counts."""
    img = nib.load(str(hippo_image))
    data = np.asanyarray(img.dataobj).astype(np.float32)
    data[10, 20, 15] = value
    path = tmp_path / "bad.nii.gz"
    nib.save(nib.Nifti1Image(data, img.affine), str(path))
    array = read_image(path).array
    assert not np.isfinite(array[0, 15, 20, 10])
    proc = _ldseg("segment", path, "-o", tmp_path / "out", "--model", tiny_3d_model, "--progress", "none")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert ("NaN" in proc.stderr) or ("infinite" in proc.stderr)


def test_nifti_voxels_equal_itks_on_real_files(shared_data):
    """The verified read changes nothing for good files, images and labels."""
    for sub in ("images", "labels"):
        for path in sorted((shared_data / "hippocampus" / sub).glob("*.nii.gz"))[:6]:
            expected = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
            if sub == "images":
                np.testing.assert_array_equal(read_image(path).array[0], expected.astype(np.float32))
            else:
                np.testing.assert_array_equal(read_label(path)[0], expected.astype(np.int64))


def test_oblique_nifti_geometry_is_kept_exactly(tmp_path):
    """A rotated (not sheared) affine is kept: voxel centres land where the
    file says."""
    angle = np.deg2rad(20)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([0.7, 0.9, 2.5])
    affine[:3, 3] = [12.5, -40.25, 7.0]
    path = tmp_path / "oblique.nii.gz"
    nib.save(nib.Nifti1Image(np.random.default_rng(0).normal(size=(6, 7, 8)).astype(np.float32), affine), str(path))
    geometry = read_image(path).geometry
    linear = np.diag([-1.0, -1.0, 1.0]) @ (np.reshape(geometry.direction, (3, 3)) * geometry.spacing)
    np.testing.assert_allclose(linear, affine[:3, :3], atol=1e-5)
    np.testing.assert_allclose(np.diag([-1.0, -1.0, 1.0]) @ geometry.origin, affine[:3, 3], atol=1e-4)


# -- item 10: sizes bounded before allocating --------------------------------------


def _huge_nifti(path, compressed):
    header = nib.Nifti1Header()
    header.set_data_shape((2000, 2000, 2000))
    header.set_data_dtype(np.float32)
    header["vox_offset"] = 352
    raw = header.binaryblock + b"\0" * 4 + b"\1" * 64
    if compressed:
        import gzip

        raw = gzip.compress(raw)
    path.write_bytes(raw)
    return path


def _huge_nrrd(path):
    import gzip

    text = b"NRRD0004\ntype: float\ndimension: 3\nsizes: 2000 2000 2000\nendian: little\nencoding: gzip\n\n"
    path.write_bytes(text + gzip.compress(b"\1" * 64))
    return path


@pytest.mark.parametrize("kind", ["nii", "nii.gz", "nrrd"])
def test_header_claiming_2000_cubed_is_refused_without_allocating(tmp_path, kind):
    path = tmp_path / f"huge.{kind}"
    if kind == "nrrd":
        _huge_nrrd(path)
    else:
        _huge_nifti(path, compressed=kind == "nii.gz")
    with pytest.raises(InputError) as info:
        read_image(path)
    assert "truncated" in str(info.value) or "claims" in str(info.value)
    rss = _max_rss_mb(
        f"from ldseg.io.images import read_image\ntry:\n    read_image({str(path)!r})\nexcept Exception:\n    pass"
    )
    assert rss < 1000, rss  # the voxels claimed would be 32 GB


def test_large_preview_memory_is_bounded(tmp_path):
    """A 4000 x 4000 preview: the inputs are 150 MB; drawing must not add GBs."""
    script = textwrap.dedent(
        f"""
        import numpy as np
        from ldseg.io.preview import save_preview_png
        rng = np.random.default_rng(0)
        image = rng.normal(size=(1, 4000, 4000)).astype(np.float32)
        labels = (image[0] > 0.5).astype(np.uint8)
        sd = rng.random((4000, 4000), dtype=np.float32)
        save_preview_png(image, labels, sd, [(0, 0, 0), (255, 0, 0)], {str(tmp_path / "p.png")!r})
        """
    )
    assert _max_rss_mb(script) < 900
    assert (tmp_path / "p.png").stat().st_size > 1000


# -- item 9: FIFOs and other special files ---------------------------------------


def test_fifo_image_is_refused_without_hanging(tmp_path, tiny_3d_model):
    fifo = tmp_path / "pipe.nii.gz"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="not a regular file"):
        read_image(fifo)
    proc = _ldseg("segment", fifo, "-o", tmp_path / "out", "--model", tiny_3d_model, timeout=300)
    assert proc.returncode == 2 and "not a regular file" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_fifo_in_a_training_set_is_refused_without_hanging(tmp_path, shared_data):
    data = tmp_path / "data"
    for sub in ("images", "labels"):
        (data / sub).mkdir(parents=True)
        for name in ("hippocampus_001.nii.gz", "hippocampus_003.nii.gz"):
            (data / sub / name).write_bytes((shared_data / "hippocampus" / sub / name).read_bytes())
    os.mkfifo(data / "images" / "hippocampus_004.nii.gz")
    (data / "labels" / "hippocampus_004.nii.gz").write_bytes(
        (shared_data / "hippocampus" / "labels" / "hippocampus_004.nii.gz").read_bytes()
    )
    out = tmp_path / "m.safetensors"
    proc = _ldseg("train", data, "-o", out, "--epochs", "1", "--size", "tiny", "--progress", "none", timeout=300)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "not a regular file" in proc.stderr
    assert not out.exists() and not (tmp_path / "m.run").exists()


def test_fifo_in_a_dicom_folder_is_refused(tmp_path):
    folder = tmp_path / "dicom"
    folder.mkdir()
    os.mkfifo(folder / "slice000.dcm")
    with pytest.raises(InputError, match="not a regular file"):
        read_image(folder)


# -- item 15: a DICOM folder with two series ---------------------------------------


def _write_series(volume: sitk.Image, folder, uid: str, first: int = 0):
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(volume.GetDepth()):
        piece = volume[:, :, k]
        tags = {
            "0008|0060": "MR",
            "0020|000e": uid,
            "0020|000d": uid + ".9",
            "0008|0018": f"{uid}.{k + 1}",
            "0020|0037": "1\\0\\0\\0\\1\\0",
            "0020|0032": "\\".join(str(v) for v in volume.TransformIndexToPhysicalPoint((0, 0, k))),
            "0020|0013": str(k + 1),
        }
        for key, value in tags.items():
            piece.SetMetaData(key, value)
        writer.SetFileName(str(folder / f"im{first + k:03d}.dcm"))
        writer.Execute(piece)


def test_dicom_folder_with_two_series_is_refused_naming_them(tmp_path):
    folder = tmp_path / "study"
    folder.mkdir()
    rng = np.random.default_rng(0)
    a = sitk.GetImageFromArray(rng.integers(0, 500, (4, 8, 8)).astype(np.int16))
    b = sitk.GetImageFromArray(rng.integers(0, 500, (3, 8, 8)).astype(np.int16))
    _write_series(a, folder, "1.2.826.0.1.3680043.2.1125.1")
    _write_series(b, folder, "1.2.826.0.1.3680043.2.1125.2", first=10)
    with pytest.raises(InputError) as info:
        read_image(folder)
    message = str(info.value)
    assert "2 DICOM series" in message and "1125.1 (4 files)" in message and "1125.2 (3 files)" in message
    # one series per folder reads as before
    single = tmp_path / "one"
    single.mkdir()
    _write_series(a, single, "1.2.826.0.1.3680043.2.1125.1")
    np.testing.assert_array_equal(read_image(single).array[0], sitk.GetArrayFromImage(a))


# -- item 6: a full disk -----------------------------------------------------------


FULL_DISK = textwrap.dedent(
    """
    import resource, signal, sys
    import numpy as np
    from ldseg.errors import OutputError
    from ldseg.io.images import Geometry, write_image
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes fail with EFBIG, as on a full disk
    resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))
    rng = np.random.default_rng(0)
    array = rng.normal(size={shape}).astype(np.float32)
    try:
        write_image(array, Geometry.identity({dims}), sys.argv[1])
    except OutputError as e:
        print("REFUSED", e)
    """
)


@pytest.mark.parametrize(
    "name, shape",
    [("out.nii", (20, 30, 40)), ("out.nii.gz", (20, 30, 40)), ("out.nrrd", (20, 30, 40)), ("out.mha", (20, 30, 40))],
)
def test_full_disk_never_publishes_a_short_file(tmp_path, name, shape):
    target = tmp_path / name
    target.write_bytes(b"the user's earlier file")
    script = FULL_DISK.format(shape=shape, dims=len(shape))
    proc = subprocess.run([sys.executable, "-c", script, str(target)], capture_output=True, text=True)
    assert "REFUSED" in proc.stdout, proc.stdout + proc.stderr
    assert proc.stderr == ""  # the C library's own complaints are not shown
    assert target.read_bytes() == b"the user's earlier file"
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # no temporary file left


def test_write_with_room_enough_still_works(tmp_path):
    array = np.random.default_rng(0).normal(size=(20, 30, 40)).astype(np.float32)
    for name in ("a.nii", "a.nii.gz", "a.nrrd"):
        write_image(array, Geometry.identity(3), tmp_path / name)
        np.testing.assert_array_equal(read_image(tmp_path / name).array[0], array)


# -- item 17: the Python API --------------------------------------------------------


@pytest.fixture(scope="module")
def segmenter(tiny_3d_model):
    return Segmenter(tiny_3d_model, device="cpu")


def _volume():
    return np.random.default_rng(0).normal(size=(8, 16, 16)).astype(np.float32)


def test_api_refuses_complex_arrays(segmenter):
    with pytest.raises(InputError, match="complex"):
        segmenter.segment(_volume() + 1j * _volume())
    with pytest.raises(InputError, match="complex"):
        segmenter.segment(MedicalImage((_volume() + 1j)[None], Geometry.identity(3)))
    with pytest.raises(InputError, match="numbers"):
        segmenter.segment(np.full((8, 16, 16), "a"))


BAD_GEOMETRY = {
    "singular": Geometry((1, 1, 1), (0, 0, 0), (1, 0, 0, 1, 0, 0, 0, 0, 1)),
    "non_orthogonal": Geometry((1, 1, 1), (0, 0, 0), (1, 0.5, 0, 0, 1, 0, 0, 0, 1)),
    "nan_spacing": Geometry((1, np.nan, 1), (0, 0, 0), tuple(np.eye(3).ravel())),
    "zero_spacing": Geometry((1, 0, 1), (0, 0, 0), tuple(np.eye(3).ravel())),
    "negative_spacing": Geometry((1, -1, 1), (0, 0, 0), tuple(np.eye(3).ravel())),
    "infinite_origin": Geometry((1, 1, 1), (0, np.inf, 0), tuple(np.eye(3).ravel())),
}


@pytest.mark.parametrize("kind", sorted(BAD_GEOMETRY))
def test_api_refuses_invalid_geometry(segmenter, kind):
    with pytest.raises(InputError, match="invalid geometry"):
        segmenter.segment(_volume(), BAD_GEOMETRY[kind])
    with pytest.raises(InputError, match="invalid geometry"):
        segmenter.segment(MedicalImage(_volume()[None], BAD_GEOMETRY[kind]))


def test_api_accepts_a_valid_oblique_geometry(segmenter):
    c, s = np.cos(0.3), np.sin(0.3)
    geometry = Geometry((0.5, 0.7, 2.0), (10, -5, 3), (c, -s, 0, s, c, 0, 0, 0, 1))
    result = segmenter.segment(_volume(), geometry)
    assert result.geometry == geometry
