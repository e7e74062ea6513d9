"""The fixed patient split of the LIDC nodule crops, and data-set folders for it.

    python scripts/lidc_split.py write [DATA]            # -> docs/evaluation/lidc-split.json
    python scripts/lidc_split.py link PART DEST [DATA] [--patients K]
                                 # PART: trainval | test; links, no copies; K: only every
                                 # K-th patient of the part (a small smoke-test subset)
    python scripts/lidc_split.py val-fraction            # --val-fraction that validates exactly
                                                         # the recorded validation patients

Rule: the patients (LIDC-IDRI-PPPP, the part of a slice name before the
first '_') sorted by name; the last 15 % are the test patients, the 10 %
before them validation, the rest training. Slices of one patient are
always on one side (neighbouring slices are near copies).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ldseg.data.dataset import case_group, find_pairs

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "lidc"
SPLIT_FILE = ROOT / "docs" / "evaluation" / "lidc-split.json"
GROUP_BY = r"^LIDC-IDRI-\d+"
TEST_FRACTION, VAL_FRACTION = 0.15, 0.10


def patient_split(data: Path) -> dict:
    pairs = find_pairs(data)
    slices: dict[str, int] = {}
    for pair in pairs:
        patient = case_group(pair.name, GROUP_BY)
        slices[patient] = slices.get(patient, 0) + 1
    patients = sorted(slices)
    n = len(patients)
    n_test, n_val = round(n * TEST_FRACTION), round(n * VAL_FRACTION)
    parts = {
        "train": patients[: n - n_test - n_val],
        "validation": patients[n - n_test - n_val : n - n_test],
        "test": patients[n - n_test :],
    }
    return {
        "dataset": "lidc",
        "group_by": GROUP_BY,
        "rule": "patients sorted by name; the last 15 % test, the 10 % before them validation, the rest training",
        "patients": {k: len(v) for k, v in parts.items()},
        "slices": {k: sum(slices[p] for p in v) for k, v in parts.items()},
        **parts,
    }


def link(part: str, dest: Path, data: Path, split: dict, every: int = 1) -> None:
    """A data-set folder of symbolic links to the slices of one part."""
    patients = split["train"] + split["validation"] if part == "trainval" else split[part]
    wanted = set(patients[::every])
    if dest.exists():
        sys.exit(f"{dest}: exists; choose a new folder")
    pairs = [p for p in find_pairs(data) if case_group(p.name, GROUP_BY) in wanted]
    for pair in pairs:
        for source in (pair.image, *pair.labels):
            target = dest / source.parent.name / source.name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(source.resolve())
    print(f"{dest}: {len(pairs)} slices of {len(wanted)} patients")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("write", "link", "val-fraction"))
    parser.add_argument("rest", nargs="*")
    parser.add_argument("--patients", type=int, default=1, help="link: every K-th patient only")
    args = parser.parse_args()
    if args.command == "write":
        data = Path(args.rest[0]) if args.rest else DEFAULT_DATA
        SPLIT_FILE.write_text(json.dumps(patient_split(data), indent=1) + "\n")
        print(f"wrote {SPLIT_FILE}")
        return
    split = json.loads(SPLIT_FILE.read_text())
    if args.command == "val-fraction":
        # split_cases validates the last round(n * f) groups of the n train + validation patients
        n_val = len(split["validation"])
        print(repr(n_val / (n_val + len(split["train"]))))
        return
    part, dest = args.rest[0], Path(args.rest[1])
    link(part, dest, Path(args.rest[2]) if len(args.rest) > 2 else DEFAULT_DATA, split, args.patients)


if __name__ == "__main__":
    main()
