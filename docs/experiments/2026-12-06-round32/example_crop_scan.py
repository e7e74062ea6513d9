"""Round 32: the README example's check on the 27 crop boxes within +-1 mm of the shipped one
(round 8's scan, remade for the model now shipped). Per box: whether the example test's whole
check passes, and [anterior voxels, posterior voxels, head shift along y (anterior), along z,
SD ratio border / inner]. Run from the repository root:
python docs/experiments/2026-12-06-round32/example_crop_scan.py OUT.json"""

import itertools
import json
import sys
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy.ndimage import binary_erosion

sys.path.insert(0, "scripts")
import make_example_image  # noqa: E402

from ldseg.inference.segmenter import Segmenter  # noqa: E402


def check(result):
    labels = result.labels
    anterior, posterior = labels == 1, labels == 2
    shift = np.argwhere(anterior).mean(axis=0) - np.argwhere(posterior).mean(axis=0)
    fg = labels > 0
    inner = binary_erosion(fg)
    ratio = result.sd[fg & ~inner].mean() / result.sd[binary_erosion(inner)].mean()
    counts = [int(anterior.sum()), int(posterior.sum())]
    ok = all(700 < c < 3000 for c in counts) and shift[1] > 6 and shift[0] < -1 and ratio > 5
    return bool(ok), [*counts, round(float(shift[1]), 1), round(float(shift[0]), 1), round(float(ratio), 1)]


def main(out: str) -> int:
    segmenter = Segmenter(device="cpu", precision="auto")
    scan = {}
    with tempfile.TemporaryDirectory() as tmp:
        for offset in itertools.product((-1, 0, 1), repeat=3):
            center = np.asarray(make_example_image.LEFT_CENTER) + offset
            path = Path(tmp) / "crop.nii.gz"
            nib.save(make_example_image.make_crop("left", center=tuple(center)), str(path))
            scan[str(offset)] = check(segmenter.segment(str(path), samples=10, seed=0))
            print(offset, scan[str(offset)], flush=True)
    Path(out).write_text(json.dumps(scan) + "\n")
    print(f"{sum(ok for ok, _ in scan.values())} of {len(scan)} pass the whole check")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
