"""Record the shipped models' segmentations of a few real cases, so a test can
check that refactoring the engine changes no result bit (Testing/reference/).

Run only when a model's output is meant to change (a retrained model, a new
sampler default): ``python scripts/make_reference_outputs.py``. fp32 kernels
differ between CPU kinds in the last bits (AVX-512 against AVX2 machines), so
``--add-cpu`` records the same cases on another kind of CPU as that kind's
set (``alternates``, keyed by ``ldseg.device.cpu_kind``), or, on the main
set's own kind, refreshes the main set and keeps the others; a new main recording
drops those sets, which belonged to the old outputs. Each record names the
SHA-256 of the model file it was made with, so a record of a model file
that has since been replaced is known as such (the test skips it and says
how to record it anew) instead of failing on a CPU kind nobody could record.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
OUT = ROOT / "Testing" / "reference" / "shipped_outputs.json"

#: (model, data set folder, case) — held-out cases of each shipped model.
CASES = [
    ("hippocampus", "hippocampus", "hippocampus_393.nii.gz"),
    ("hippocampus", "hippocampus", "hippocampus_350.nii.gz"),
    ("glas", "glas/testA", "testA_1.png"),
    ("lidc", "lidc", "LIDC-IDRI-0848_nodule-0_slice-1.png"),  # a test patient of docs/evaluation/lidc-split.json
]
SETTINGS = dict(samples=3, steps=2, seed=7)


def digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def main() -> int:
    from ldseg.device import cpu_kind
    from ldseg.inference.segmenter import Segmenter  # the script's own import path is rewritten on moves
    from ldseg.io.models import resolve_model

    add_cpu = "--add-cpu" in sys.argv[1:]
    torch.set_num_threads(2)
    records = []
    for precision in ("fp32", "auto"):
        for model, folder, case in CASES:
            seg = Segmenter(model, device="cpu", precision=precision)
            result = seg.segment(DATA / folder / "images" / case, **SETTINGS)
            records.append(
                {
                    "model": model,
                    "model_sha256": file_digest(resolve_model(model)),
                    "case": f"{folder}/images/{case}",
                    "precision": precision,
                    "ran_precision": result.precision,
                    "labels": digest(result.labels),
                    "probabilities": digest(result.probabilities),
                    "sd": digest(result.sd),
                    "foreground_voxels": int((result.classes > 0).sum()),
                }
            )
            print(records[-1])
    kind = cpu_kind()
    if add_cpu:
        reference = json.loads(OUT.read_text())
        if reference["settings"] != SETTINGS or reference["torch"] != torch.__version__:
            raise SystemExit("the main recording has other settings or another torch: record it anew first")
        if kind == reference.get("cpu_kind"):  # the main set's own kind: refresh it, keep the other kinds' sets
            reference["records"] = records
        else:
            reference.setdefault("alternates", {})[kind] = records
    else:
        reference = {"settings": SETTINGS, "torch": torch.__version__, "cpu_kind": kind, "records": records}
    OUT.write_text(json.dumps(reference, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
