#!/usr/bin/env python3
"""Make the main job's example image: a crop around one hippocampus of the MNI152 T1 template.

The template is the ICBM 2009a nonlinear symmetric T1 average (1 mm; Fonov et al. 2009, 2011)
that nilearn ships inside its wheel (``nilearn/datasets/data/``), so this needs the ``example``
extra (``pip install -e '.[example]'``) and no network. nilearn is not imported: the file is
only located in the installed package and read with nibabel. Template terms: Copyright (C)
1993-2009 Louis Collins, McConnell Brain Imaging Centre, Montreal Neurological Institute, McGill
University; use, copying, modification and distribution for any purpose without fee, provided
that the copyright notice appears in all copies (full notice in README.md).

The crop imitates the Medical Segmentation Decathlon Task04 crops the default model was
trained on. The network sees the array, not the geometry, so the array must lie as theirs
does: in their arrays axis 0 runs from lateral to medial (the ambient cistern's CSF on the
high side), axis 1 from posterior to anterior (the anterior label's centre is 18 voxels higher
than the posterior one's), axis 2 from inferior to superior (7 voxels lower) -- the layout of a
LEFT hippocampus in RAS order. A left crop is therefore the template's RAS array as it is; a
right crop is the mirrored box with axis 0 reversed (LAS order), on this symmetric template the
very same array. Either way the affine is the template's, so the crop lies at its true MNI
position (in Slicer it overlays the whole template). The intensities are the template's (uint8);
the model normalizes with percentiles. The box (size within the Decathlon range, hippocampus
placed as in them) correlates 0.55 with the mean of the 208 Decathlon crops on the model grid
(the best box found: 0.63; this one flipped left-right: 0.01); it was then moved to where the
interim model is stable on this smooth average brain (every 1 mm shift still gives a plausible
result).

    python scripts/make_example_image.py [-o OUT.nii.gz] [--side left|right]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

TEMPLATE = "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
#: Centre of the crop around the LEFT hippocampus in MNI mm (x, y, z); the right one mirrors x.
LEFT_CENTER = (-30.0, -21.0, -15.0)
#: Crop size in mm = voxels (x, y, z); the Decathlon crops range from 31 x 40 x 24 to
#: 43 x 59 x 47 (median 35 x 50 x 36).
SIZE = (32, 46, 32)
#: Where the hippocampus centre lies in a Decathlon crop, as a fraction of each array axis
#: (mean over the 208 labeled cases: 0.42, 0.52, 0.42).
RELATIVE_CENTER = (0.42, 0.52, 0.42)


def template_path() -> Path:
    """The T1 template inside the installed nilearn package (never downloaded)."""
    spec = importlib.util.find_spec("nilearn")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("make_example_image: nilearn is not installed; run: pip install -e '.[example]'")
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / TEMPLATE
    if not path.is_file():
        raise SystemExit(f"make_example_image: {path} not found in the installed nilearn")
    return path


def make_crop(side: str = "left", center=LEFT_CENTER, size=SIZE) -> nib.Nifti1Image:
    """Crop the template around the `side` hippocampus, laid out as the Decathlon crops.

    ``center`` is given for the left side (MNI mm) and mirrored for the right one, so that
    on this symmetric template both sides give the same array."""
    if side not in ("left", "right"):
        raise ValueError(f"side must be left or right, got {side!r}")
    image = nib.as_closest_canonical(nib.load(template_path()))  # RAS, 1 mm voxels
    if not np.allclose(np.abs(np.diag(image.affine)[:3]), 1.0):
        raise ValueError(f"expected a 1 mm template, got the affine {image.affine.tolist()}")
    size = np.asarray(size, dtype=int)
    # The left box's first voxel (lateral, posterior, inferior corner) in mm; array axis 0
    # then runs lateral -> medial as in the Decathlon crops.
    first = np.rint(np.asarray(center, dtype=float) - np.asarray(RELATIVE_CENTER) * size)
    if side == "right":  # mirror the box; axis 0 is reversed below
        first[0] = -(first[0] + size[0] - 1)
    start = np.rint(np.linalg.inv(image.affine) @ np.r_[first, 1.0])[:3].astype(int)
    stop = start + size
    if (start < 0).any() or (stop > np.asarray(image.shape[:3])).any():
        raise ValueError(f"crop {start.tolist()}..{stop.tolist()} leaves the template {image.shape}")
    crop = image.slicer[start[0] : stop[0], start[1] : stop[1], start[2] : stop[2]]
    data = np.asarray(crop.dataobj)
    affine = crop.affine.copy()
    if side == "right":
        data = np.ascontiguousarray(data[::-1])
        flip = np.eye(4)
        flip[0, 0], flip[0, 3] = -1.0, size[0] - 1
        affine = affine @ flip  # the same voxels at the same places, axis 0 reversed (LAS)
    out = nib.Nifti1Image(data, affine)
    out.set_qform(affine, code="mni")
    out.set_sform(affine, code="mni")
    out.header.set_xyzt_units("mm")
    out.header["descrip"] = f"MNI152 2009a sym T1 (nilearn), {side} hippocampus crop".encode()
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "-o",
        "--output",
        default="out/example/mni152_left_hippocampus.nii.gz",
        help="NIfTI file to write (default: %(default)s)",
    )
    parser.add_argument("--side", choices=("left", "right"), default="left", help="which hippocampus (default: left)")
    args = parser.parse_args(argv)
    crop = make_crop(args.side)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    nib.save(crop, output)
    origin = crop.affine[:3, 3]
    print(
        f"{output}: {args.side} hippocampus crop of the MNI152 T1 template, "
        f"{'x'.join(map(str, crop.shape))} voxels of 1 mm, first voxel at MNI "
        f"({origin[0]:g}, {origin[1]:g}, {origin[2]:g}) mm, {''.join(nib.aff2axcodes(crop.affine))}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
