"""Medical image reading and writing with the physical geometry preserved.

Everything goes through SimpleITK so that spacing, origin and direction survive
a read -> segment -> write round trip; a segmentation written next to its input
must overlay it exactly in 3D Slicer. Arrays use SimpleITK's numpy order
(``(z, y, x)`` or ``(y, x)``), geometry uses its physical order
(``x, y[, z]``).

User mistakes (missing, damaged or unsupported files) raise
:class:`~ldseg.errors.InputError`; output problems raise
:class:`~ldseg.errors.OutputError`; both carry a one-line message naming
the path.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import re
import shutil
import stat
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import InputError, OutputError, display_name
from .atomic import atomic_path

__all__ = [
    "Geometry",
    "MedicalImage",
    "check_geometry",
    "read_image",
    "read_label",
    "write_image",
    "write_segmentation_nrrd",
    "split_extension",
    "is_image_path",
    "IMAGE_EXTENSIONS",
    "WRITE_EXTENSIONS",
]

#: Extensions that need more than one suffix to be recognized.
_COMPOUND_EXTENSIONS = (".seg.nrrd", ".nii.gz")

_2D_EXTENSIONS = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")
_3D_EXTENSIONS = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd", ".dcm")

#: File extensions :func:`read_image` accepts (lower case); folders are DICOM.
IMAGE_EXTENSIONS = _2D_EXTENSIONS + _3D_EXTENSIONS + (".seg.nrrd",)

#: File extensions :func:`write_image` can write (single-file formats only).
WRITE_EXTENSIONS = (".nii", ".nii.gz", ".nrrd", ".seg.nrrd", ".mha", ".png")

_COMPRESSED_EXTENSIONS = (".nii.gz", ".nrrd", ".seg.nrrd", ".mha")


# --------------------------------------------------------------------------
# Geometry and image containers
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Geometry:
    """Physical placement of a voxel grid (SimpleITK conventions, mm)."""

    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]

    def __post_init__(self):
        # Normalize to plain float tuples so equality and hashing are stable.
        object.__setattr__(self, "spacing", tuple(float(v) for v in self.spacing))
        object.__setattr__(self, "origin", tuple(float(v) for v in self.origin))
        object.__setattr__(self, "direction", tuple(float(v) for v in self.direction))
        dims = len(self.spacing)
        if len(self.origin) != dims or len(self.direction) != dims * dims:
            raise ValueError(
                f"inconsistent geometry: {dims} spacings, {len(self.origin)} "
                f"origin values, {len(self.direction)} direction values"
            )

    @property
    def dims(self) -> int:
        """Number of spatial dimensions."""
        return len(self.spacing)

    def matches(self, other: "Geometry", tol: float = 1e-4) -> bool:
        """True when spacing, origin and direction agree within ``tol``.

        ``tol`` is used both as absolute and relative tolerance, so origins far
        from zero written by different tools (float32 headers) still match.
        """
        if self.dims != other.dims:
            return False
        return all(
            np.allclose(a, b, rtol=tol, atol=tol)
            for a, b in (
                (self.spacing, other.spacing),
                (self.origin, other.origin),
                (self.direction, other.direction),
            )
        )

    @classmethod
    def identity(cls, dims: int) -> "Geometry":
        """Unit spacing, zero origin, identity direction."""
        return cls((1.0,) * dims, (0.0,) * dims, tuple(np.eye(dims).ravel().tolist()))

    @classmethod
    def from_sitk(cls, image: sitk.Image) -> "Geometry":
        """Geometry of a SimpleITK image."""
        return cls(image.GetSpacing(), image.GetOrigin(), image.GetDirection())

    def apply_to(self, image: sitk.Image) -> None:
        """Set this geometry on a SimpleITK image (in place)."""
        image.SetSpacing(self.spacing)
        image.SetOrigin(self.origin)
        image.SetDirection(self.direction)

    def describe(self, other: "Geometry | None" = None) -> str:
        """Short human-readable form for error messages.

        With ``other``, only the parts that differ from it are listed.
        """
        parts = []
        for field_name in ("spacing", "origin", "direction"):
            mine = getattr(self, field_name)
            if (
                other is not None
                and len(mine) == len(getattr(other, field_name))
                and np.allclose(mine, getattr(other, field_name), rtol=1e-4, atol=1e-4)
            ):
                continue
            text = ", ".join(f"{v:.6g}" for v in mine)
            parts.append(f"{field_name} ({text})")
        return ", ".join(parts) or "same geometry"


def check_geometry(geometry: Geometry, name: str = "<array>") -> None:
    """Refuse a geometry that cannot place voxels in space: spacing that is not
    positive and finite, an origin that is not finite, a direction that is
    not a rotation (singular, non-orthogonal, NaN)."""
    spacing, origin = np.asarray(geometry.spacing), np.asarray(geometry.origin)
    direction = np.asarray(geometry.direction).reshape(geometry.dims, geometry.dims)
    if not (np.all(np.isfinite(spacing)) and np.all(spacing > 0)):
        raise InputError(f"{name}: invalid geometry: spacing must be positive and finite, not {geometry.spacing}")
    if not np.all(np.isfinite(origin)):
        raise InputError(f"{name}: invalid geometry: the origin must be finite, not {geometry.origin}")
    if not (np.all(np.isfinite(direction)) and np.allclose(direction.T @ direction, np.eye(geometry.dims), atol=1e-3)):
        raise InputError(f"{name}: invalid geometry: the direction must be a rotation (orthonormal columns)")


@dataclass
class MedicalImage:
    """An image as ``(C, *spatial)`` float32 array plus its geometry."""

    array: np.ndarray
    geometry: Geometry
    source: str | None = None

    @property
    def dims(self) -> int:
        """Number of spatial dimensions."""
        return self.array.ndim - 1

    @property
    def channels(self) -> int:
        """Number of channels (1 gray, 3 RGB, ...)."""
        return int(self.array.shape[0])

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """Spatial size in numpy order."""
        return tuple(int(s) for s in self.array.shape[1:])

    @property
    def name(self) -> str:
        """Base name of the source for messages."""
        return display_name(self.source) if self.source else "<array>"


# --------------------------------------------------------------------------
# Paths
# --------------------------------------------------------------------------


def split_extension(path) -> tuple[str, str]:
    """Split a path's base name into ``(stem, extension)``.

    Compound extensions (``.nii.gz``, ``.seg.nrrd``) are kept together;
    folders (DICOM series) have an empty extension. The extension keeps
    its original case.
    """
    path = Path(path)
    name = path.name
    if path.is_dir():
        return name, ""
    lower = name.lower()
    for ext in _COMPOUND_EXTENSIONS:
        if lower.endswith(ext) and len(name) > len(ext):
            cut = len(name) - len(ext)
            return name[:cut], name[cut:]
    suffix = path.suffix
    if not suffix or suffix == name:
        return name, ""
    return name[: -len(suffix)], suffix


def is_image_path(path) -> bool:
    """True for a file with a supported extension or a folder (DICOM)."""
    path = Path(path)
    if path.is_dir():
        return True
    return split_extension(path)[1].lower() in IMAGE_EXTENSIONS


# --------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------


def _read_dicom_folder(folder: Path) -> sitk.Image:
    """Read the largest DICOM series in ``folder``."""
    name = display_name(folder)
    special = [p.name for p in folder.iterdir() if not (p.is_file() or p.is_dir())]
    if special:  # GDCM would open a pipe and wait forever
        raise InputError(f"{name}: folder holds {special[0]!r}, which is not a regular file (a pipe or device)")
    # GDCM prints a warning for folders without DICOM; we raise instead.
    warnings_on = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        series_ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    except RuntimeError:
        series_ids = ()
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(warnings_on)
    if not series_ids:
        raise InputError(f"{name}: folder contains no DICOM series (give an image file or a folder of DICOM files)")
    if len(series_ids) > 1:
        counts = [len(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), sid)) for sid in series_ids]
        listed = "; ".join(f"{sid} ({n} files)" for sid, n in zip(series_ids, counts))
        raise InputError(
            f"{name}: folder holds {len(series_ids)} DICOM series ({listed}); "
            "put the series to segment in a folder of its own"
        )
    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series_ids[0])
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    try:
        return reader.Execute()
    except RuntimeError:
        raise InputError(f"{name}: the DICOM series could not be read (damaged or unsupported DICOM files)") from None


def _read_nifti_with_nibabel(path: Path) -> sitk.Image:
    """Fallback for NIfTI files ITK refuses (e.g. non-orthonormal affines).

    The affine is converted from RAS to ITK's LPS, its column norms become the
    spacing and the nearest rotation (polar decomposition) the direction.
    """
    import nibabel as nib

    img = nib.load(str(path))
    data = np.asanyarray(img.dataobj)
    if data.ndim < 2 or data.ndim > 4:
        raise ValueError("unsupported dimensionality")
    spatial = min(data.ndim, 3)
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ img.affine
    linear = affine[:spatial, :spatial]
    spacing = np.linalg.norm(linear, axis=0)
    u, _, vt = np.linalg.svd(linear / spacing)
    direction = u @ vt
    # numpy order: reverse the spatial axes, channels (4th axis) first.
    if data.ndim == 4:
        array = np.transpose(data, (3, 2, 1, 0))
        image = sitk.Compose([sitk.GetImageFromArray(np.ascontiguousarray(a)) for a in array])
    else:
        array = np.transpose(data, tuple(range(data.ndim))[::-1])
        image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    Geometry(spacing, affine[:spatial, 3], direction.ravel()).apply_to(image)
    return image


def _read_nifti_isolated(path: Path) -> sitk.Image:
    """Read ``x.nii.gz`` from a private folder when ``x.nii`` sits beside it.

    ITK's NIfTI library looks for the uncompressed sibling first and would
    silently return ``x.nii``'s voxels; a link in an empty folder avoids it.
    """
    with tempfile.TemporaryDirectory(prefix="ldseg-") as folder:
        alias = os.path.join(folder, "image.nii.gz")
        try:
            os.symlink(path.resolve(), alias)
        except OSError:  # no symlinks (e.g. Windows without rights)
            shutil.copyfile(path, alias)
        return sitk.ReadImage(alias)


#: Single-file formats whose header states the voxel count of the data in
#: the same file, and the most that deflate can shrink data (about 1032:1).
_SINGLE_FILE_3D = (".nii", ".nii.gz", ".nrrd", ".seg.nrrd", ".mha")
_MAX_COMPRESSION = 1100


def _check_claimed_size(path: Path, ext: str, file_size: int, name: str) -> None:
    """Refuse a header that claims more voxels than the file can hold, before
    the reader allocates them (a 2000^3 header with 64 bytes of data)."""
    if ext not in _SINGLE_FILE_3D:
        return
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        with _c_stderr_silenced():
            reader.ReadImageInformation()
    except RuntimeError:
        return  # the full read reports what is wrong
    voxels = math.prod(int(v) for v in reader.GetSize()) * max(1, reader.GetNumberOfComponents())
    claimed = voxels * _component_bytes(reader.GetPixelID())
    uncompressed = ext == ".nii" or (
        ext == ".nrrd" and reader.HasMetaDataKey("NRRD_encoding") and reader.GetMetaData("NRRD_encoding") == "raw"
    )
    if uncompressed and file_size < claimed:
        raise InputError(
            f"{name}: the file is truncated (its header describes {claimed:,} bytes of voxels, the file has {file_size:,})"
        )
    if file_size * _MAX_COMPRESSION < claimed:
        raise InputError(
            f"{name}: the header claims {voxels:,} voxels, far more than the {file_size:,}-byte file can hold "
            "(damaged or truncated file)"
        )


def _component_bytes(pixel_id: int) -> int:
    """Bytes of one pixel component of a SimpleITK pixel type ("32-bit float",
    "vector of 16-bit signed integer", "complex of 64-bit float", ...)."""
    text = sitk.GetPixelIDValueAsString(pixel_id)
    bits = re.search(r"(\d+)-bit", text)
    size = int(bits.group(1)) // 8 if bits else 1
    return 2 * size if "complex" in text else size


def _nifti_voxels(path: Path, array: np.ndarray, geometry: "Geometry", name: str) -> np.ndarray:
    """The voxels of a NIfTI file as nibabel reads them (it reports a
    truncated file, and keeps NaN and infinity, where ITK gives zeros), in
    the layout of ITK's ``array``; and its geometry checked against the
    file's affine (a sheared affine cannot be kept: it is refused)."""
    import nibabel as nib

    try:
        img = nib.load(str(path), mmap=False)
        data = np.asanyarray(img.dataobj)
    except Exception:  # noqa: BLE001 - EOFError, zlib.error, ValueError, OSError: all mean damaged
        raise InputError(f"{name}: the NIfTI file is truncated or damaged (its voxels cannot all be read)") from None
    _check_nifti_geometry(img.affine, geometry, name)
    if data.ndim == 5 and data.shape[3] == 1:  # a vector image (as ITK writes them): x, y, z, 1, c
        data = data[:, :, :, 0]
    spatial = min(data.ndim, 3)
    order = tuple(range(spatial))[::-1]
    voxels = np.transpose(data, (3, *order)) if data.ndim == 4 else np.transpose(data, order)[np.newaxis]
    if voxels.shape != array.shape:
        return array  # a layout we do not map: ITK's voxels, whose completeness nibabel has checked
    return np.ascontiguousarray(voxels)


def _check_nifti_geometry(affine: np.ndarray, geometry: "Geometry", name: str) -> None:
    dims = geometry.dims
    lps_to_ras = np.diag([-1.0, -1.0, 1.0])[:dims, :dims]
    linear = lps_to_ras @ (np.asarray(geometry.direction).reshape(dims, dims) * np.asarray(geometry.spacing))
    origin = lps_to_ras @ np.asarray(geometry.origin)
    scale = max(1.0, float(np.abs(affine[:dims, :dims]).max()))
    if not (
        np.allclose(linear, affine[:dims, :dims], atol=1e-3 * scale)
        and np.allclose(origin, affine[:dims, 3], atol=1e-2, rtol=1e-5)
    ):
        raise InputError(
            f"{name}: the NIfTI affine is sheared (or its qform and sform disagree), which LDSeg cannot keep "
            "exactly; resample the image to a grid without shear first"
        )


def _read_sitk(path) -> sitk.Image:
    """Read any supported path into a SimpleITK image or raise InputError."""
    path = Path(path)
    name = display_name(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise InputError(f"{name}: file not found ({path})") from None
    except OSError as e:
        raise InputError(f"{name}: cannot be read ({e.strerror})") from None
    if stat.S_ISDIR(info.st_mode):
        return _read_dicom_folder(path)
    if not stat.S_ISREG(info.st_mode):  # a FIFO would block the reader forever
        raise InputError(f"{name}: not a regular file (a pipe or device cannot be read as an image)")
    if not os.access(path, os.R_OK):
        raise InputError(f"{name}: cannot be read (Permission denied)")
    stem, ext = split_extension(path)
    ext = ext.lower()
    if ext not in IMAGE_EXTENSIONS:
        raise InputError(
            f"{name}: unsupported file type '{ext or '(none)'}' (supported: "
            f"{', '.join(IMAGE_EXTENSIONS)} or a DICOM folder)"
        )
    _check_claimed_size(path, ext, info.st_size, name)
    try:
        if ext == ".nii.gz" and path.with_name(stem + ".nii").exists():
            return _read_nifti_isolated(path)
        return sitk.ReadImage(str(path))
    except RuntimeError:
        pass
    if ext in (".nii", ".nii.gz"):
        try:
            return _read_nifti_with_nibabel(path)
        except Exception:  # noqa: BLE001 - any failure means unreadable
            pass
    raise InputError(f"{name}: could not be read as a {ext} image (the file is damaged or not an image)")


def _squash_4d(image: sitk.Image) -> tuple[np.ndarray, Geometry]:
    """Turn a 4D scalar image (e.g. multi-modal NIfTI) into 3D channels."""
    array = sitk.GetArrayViewFromImage(image)  # (c, z, y, x)
    direction = np.asarray(image.GetDirection()).reshape(4, 4)[:3, :3]
    geometry = Geometry(image.GetSpacing()[:3], image.GetOrigin()[:3], direction.ravel())
    return np.array(array), geometry


def _to_channels_first(image: sitk.Image, name: str) -> tuple[np.ndarray, Geometry]:
    """Array ``(C, *spatial)`` (native dtype) and geometry of an image."""
    dims = image.GetDimension()
    if dims == 4 and image.GetNumberOfComponentsPerPixel() == 1:
        return _squash_4d(image)
    if dims not in (2, 3):
        raise InputError(f"{name}: {dims}D images are not supported (only 2D and 3D)")
    array = sitk.GetArrayFromImage(image)
    if image.GetNumberOfComponentsPerPixel() > 1:
        array = np.moveaxis(array, -1, 0)
    else:
        array = array[np.newaxis]
    if np.iscomplexobj(array):
        raise InputError(f"{name}: complex-valued images are not supported")
    return array, Geometry.from_sitk(image)


def _verified_voxels(path, array: np.ndarray, geometry: Geometry, name: str) -> np.ndarray:
    """What was really in the file: NIfTI voxels as nibabel reads them (see
    :func:`_nifti_voxels`), and a geometry that can place them."""
    check_geometry(geometry, name)
    if not Path(path).is_dir() and split_extension(path)[1].lower() in (".nii", ".nii.gz"):
        return _nifti_voxels(Path(path), array, geometry, name)
    return array


def _drop_alpha(array: np.ndarray, path) -> np.ndarray:
    """Drop the alpha channel of 2-channel (gray+alpha) and RGBA 2D files."""
    is_2d_file = split_extension(path)[1].lower() in _2D_EXTENSIONS
    if is_2d_file and array.shape[0] in (2, 4):
        return array[:-1]
    return array


def read_image(path) -> MedicalImage:
    """Read an image file or DICOM folder as ``(C, *spatial)`` float32.

    Vector pixels (RGB, multi-component) become channels; a 4D scalar file
    becomes a 3D multi-channel image. Single-slice 3D files stay 3D.
    """
    name = display_name(path)
    image = _read_sitk(path)
    array, geometry = _to_channels_first(image, name)
    array = _verified_voxels(path, array, geometry, name)
    array = _drop_alpha(array, path)
    return MedicalImage(
        np.ascontiguousarray(array, dtype=np.float32),
        geometry,
        source=os.fspath(path),
    )


def _single_channel_label(array: np.ndarray, name: str) -> np.ndarray:
    """Reduce a label array ``(C, *spatial)`` to ``(*spatial)``."""
    if array.shape[0] == 1:
        return array[0]
    # Gray+alpha and RGBA masks: the alpha channel carries no label.
    color = array[:-1] if array.shape[0] in (2, 4) else array
    if all(np.array_equal(color[0], c) for c in color[1:]):
        return color[0]
    raise InputError(
        f"{name}: label map has {array.shape[0]} channels with "
        "different values (labels must be a single-channel "
        "integer map)"
    )


def _integral_labels(array: np.ndarray, name: str) -> np.ndarray:
    """Accept integer labels, or float labels holding whole numbers."""
    if array.dtype == np.bool_ or np.issubdtype(array.dtype, np.integer):
        return array.astype(np.int64)
    if not np.issubdtype(array.dtype, np.floating):
        raise InputError(f"{name}: label pixel type {array.dtype} is not supported")
    if not np.all(np.isfinite(array)):
        raise InputError(f"{name}: label map contains NaN or infinite values")
    fractional = array[array != np.round(array)]
    if fractional.size:
        examples = ", ".join(f"{v:g}" for v in np.unique(fractional)[:5])
        raise InputError(f"{name}: label map has non-integer values ({examples}); labels must be whole numbers")
    return array.astype(np.int64)


def read_label(path) -> tuple[np.ndarray, Geometry]:
    """Read an integer label map (spatial only, int64) and its geometry."""
    name = display_name(path)
    image = _read_sitk(path)
    array, geometry = _to_channels_first(image, name)
    array = _verified_voxels(path, array, geometry, name)
    labels = _single_channel_label(array, name)
    return np.ascontiguousarray(_integral_labels(labels, name)), geometry


# --------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------


def _check_output_path(path: Path, reference_path) -> str:
    """Validate an output path and return its lower-case extension."""
    name = display_name(path)
    ext = split_extension(path)[1].lower()
    if ext not in WRITE_EXTENSIONS:
        raise OutputError(f"{name}: cannot write '{ext or '(none)'}' files (use one of {', '.join(WRITE_EXTENSIONS)})")
    if reference_path is not None and _same_file(path, Path(reference_path)):
        raise OutputError(f"{name}: refusing to overwrite the input image; choose another output name")
    folder = path.parent
    if not folder.is_dir():
        raise OutputError(f"{name}: output folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"{name}: output folder {folder} is not writable")
    if path.is_dir():
        raise OutputError(f"{name}: a folder with this name already exists")
    return ext


def _same_file(a: Path, b: Path) -> bool:
    """True when both paths name the same file (following links)."""
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


@contextlib.contextmanager
def _c_stderr_silenced():
    """Discard what C libraries print to stderr meanwhile (the NIfTI library
    prints "** ERROR: NWAD" lines on a full disk): the user gets our one line."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _write_sitk(image: sitk.Image, path: str, compress: bool) -> None:
    """Write with SimpleITK (separate so tests can simulate failures)."""
    with _c_stderr_silenced():
        sitk.WriteImage(image, path, compress)


def _reads_back_as(image: sitk.Image):
    """A check that the written file holds ``image`` exactly: ITK reports no
    error when the disk fills, it leaves a short file."""

    def verify(tmp: str) -> None:
        try:
            with _c_stderr_silenced():
                back = sitk.ReadImage(tmp)
        except RuntimeError:
            raise OSError(errno.ENOSPC, "the written file does not read back (is the disk full?)") from None
        same = back.GetSize() == image.GetSize() and np.array_equal(
            sitk.GetArrayViewFromImage(back), sitk.GetArrayViewFromImage(image), equal_nan=True
        )
        if not same:
            raise OSError(errno.ENOSPC, "the written file is incomplete (is the disk full?)")

    return verify


def _atomic_write(image: sitk.Image, path: Path, ext: str) -> None:
    """Write through a temp file beside ``path`` (see :mod:`ldseg.io.atomic`),
    checked by reading it back; ITK's errors become one-line OutputErrors."""
    try:
        with atomic_path(path, suffix=ext, verify=_reads_back_as(image)) as tmp:
            _write_sitk(image, tmp, ext in _COMPRESSED_EXTENSIONS)
    except RuntimeError as exc:
        detail = str(exc).strip().splitlines()
        reason = detail[-1].strip() if detail else type(exc).__name__
        raise OutputError(f"{display_name(path)}: could not be written ({reason[:200]})") from None


def _writable_array(array: np.ndarray) -> np.ndarray:
    """Cast dtypes SimpleITK cannot store to close ones it can."""
    if array.dtype == np.bool_:
        return array.astype(np.uint8)
    if array.dtype == np.float16:
        return array.astype(np.float32)
    return array


def _png_array(array: np.ndarray, name: str, dims: int) -> np.ndarray:
    """PNG holds 2D 8-bit data only; accept integers in 0..255."""
    if dims != 2:
        raise OutputError(f"{name}: PNG can only hold 2D images; use .nrrd or .nii.gz for 3D")
    if array.dtype == np.uint8:
        return array
    integral = array.dtype == np.bool_ or np.issubdtype(array.dtype, np.integer)
    if integral and (array.size == 0 or (array.min() >= 0 and array.max() <= 255)):
        return array.astype(np.uint8)
    raise OutputError(f"{name}: PNG needs 8-bit values (0-255); use .nrrd or .nii.gz for other data")


def _to_sitk(array: np.ndarray, geometry: Geometry) -> sitk.Image:
    """SimpleITK image from a spatial or ``(C, *spatial)`` array."""
    if array.ndim == geometry.dims + 1:
        image = sitk.GetImageFromArray(np.ascontiguousarray(np.moveaxis(array, 0, -1)), isVector=True)
    elif array.ndim == geometry.dims:
        image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    else:
        raise ValueError(f"array with {array.ndim} axes does not fit a {geometry.dims}D geometry")
    geometry.apply_to(image)
    return image


def write_image(array: np.ndarray, geometry: Geometry, path, *, reference_path=None) -> None:
    """Write an array with its geometry, atomically.

    ``array`` is spatial (numpy order) or ``(C, *spatial)``, which is written
    as a vector image. Supported: .nii, .nii.gz, .nrrd, .mha, .png (2D uint8).
    Raises OutputError if ``path`` is ``reference_path`` (the input) or the
    folder is missing or not writable.
    """
    path = Path(path)
    ext = _check_output_path(path, reference_path)
    array = _writable_array(np.asarray(array))
    if ext == ".png":
        array = _png_array(array, display_name(path), geometry.dims)
    _atomic_write(_to_sitk(array, geometry), path, ext)


# --------------------------------------------------------------------------
# 3D Slicer segmentation files
# --------------------------------------------------------------------------


def _as_3d(labels: np.ndarray, geometry: Geometry) -> tuple[np.ndarray, Geometry]:
    """Slicer segmentations are 3D: give 2D labels a single slice."""
    if geometry.dims == 3:
        return labels, geometry
    direction = np.eye(3)
    direction[:2, :2] = np.asarray(geometry.direction).reshape(2, 2)
    return labels[np.newaxis], Geometry(geometry.spacing + (1.0,), geometry.origin + (0.0,), direction.ravel())


def _segment_extent(labels: np.ndarray, value: int) -> str:
    """Voxel bounding box "i0 i1 j0 j1 k0 k1" (IJK order) of one label."""
    found = np.nonzero(labels == value)
    if not found[0].size:
        return "0 -1 0 -1 0 -1"  # Slicer's notation for an empty extent
    bounds = []
    for axis in found[::-1]:  # numpy (k, j, i) -> IJK
        bounds += [int(axis.min()), int(axis.max())]
    return " ".join(str(b) for b in bounds)


def _segment_metadata(labels: np.ndarray, segments: list[dict]) -> dict[str, str]:
    """Header keys Slicer's segmentation storage node reads."""
    meta = {
        "Segmentation_MasterRepresentation": "Binary labelmap",
        "Segmentation_ContainedRepresentationNames": "Binary labelmap|",
        "Segmentation_ReferenceImageExtentOffset": "0 0 0",
        "Segmentation_SourceRepresentation": "Binary labelmap",
    }
    for i, seg in enumerate(segments):
        value = int(seg["label_value"])
        color = " ".join(f"{float(c) / 255.0:.6g}" for c in seg["color"])
        prefix = f"Segment{i}_"
        meta.update(
            {
                prefix + "ID": f"Segment_{value}",
                prefix + "Name": str(seg["name"]),
                prefix + "NameAutoGenerated": "0",
                prefix + "Color": color,
                prefix + "ColorAutoGenerated": "0",
                prefix + "LabelValue": str(value),
                prefix + "Layer": "0",
                prefix + "Extent": _segment_extent(labels, value),
                prefix + "Tags": "Segmentation.Status:inprogress|",
            }
        )
    return meta


def _validate_segments(segments: list[dict]) -> None:
    """Catch malformed segment lists early (programming errors)."""
    values = []
    for seg in segments:
        missing = {"name", "color", "label_value"} - set(seg)
        if missing:
            raise ValueError(f"segment {seg!r} lacks {sorted(missing)}")
        if len(seg["color"]) != 3:
            raise ValueError(f"segment color {seg['color']!r} is not (r, g, b)")
        values.append(int(seg["label_value"]))
    if len(set(values)) != len(values):
        raise ValueError(f"duplicate segment label values {values}")


def _compact_labels(labels: np.ndarray) -> np.ndarray:
    """Smallest of uint8/int16/int32 holding the labels (as Slicer uses)."""
    low, high = (int(labels.min()), int(labels.max())) if labels.size else (0, 0)
    for dtype in (np.uint8, np.int16, np.int32):
        info = np.iinfo(dtype)
        if info.min <= low and high <= info.max:
            return labels.astype(dtype)
    raise ValueError(f"label values {low}..{high} do not fit 32 bits")


def write_segmentation_nrrd(labels: np.ndarray, geometry: Geometry, path, segments: list[dict]) -> None:
    """Write a 3D Slicer ``.seg.nrrd`` (labelmap with segment metadata).

    ``segments`` lists the foreground classes as dicts with ``name``,
    ``color`` (r, g, b ints 0-255) and ``label_value``. All segments share
    layer 0, as in Slicer's own files for non-overlapping segments.
    """
    _validate_segments(segments)
    path = Path(path)
    name = display_name(path)
    if not name.lower().endswith(".nrrd"):
        raise OutputError(f"{name}: segmentation files must end in .seg.nrrd")
    ext = _check_output_path(path, None)
    labels = np.asarray(labels)
    if not (labels.dtype == np.bool_ or np.issubdtype(labels.dtype, np.integer)):
        raise ValueError(f"labels must be integers, not {labels.dtype}")
    if labels.ndim != geometry.dims:
        raise ValueError(f"labels with {labels.ndim} axes do not fit a {geometry.dims}D geometry")
    labels, geometry = _as_3d(_compact_labels(labels), geometry)
    image = _to_sitk(labels, geometry)
    for key, value in _segment_metadata(labels, segments).items():
        image.SetMetaData(key, value)
    _atomic_write(image, path, ext)
