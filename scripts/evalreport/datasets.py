"""The evaluated data sets: where their test cases are, which models are
evaluated by default, and the project's targets. Besides the two
single-reference data sets (hippocampus, GlaS) the multi-rater one (LIDC)
and the "new task from few cases" models on GlaS testA.

The test splits are defined here and nowhere else in the report code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ldseg.data.dataset import CasePair, case_group, find_pairs

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA_ROOT = REPO_ROOT.parent / "shared" / "data"

#: The hippocampus models are trained with ``ldseg train --cases 166``: the
#: first 166 cases in sorted order (hippocampus_001 ... hippocampus_320). The
#: remaining 42 (hippocampus_321 ... hippocampus_393) are the test set.
HIPPOCAMPUS_TRAINING_CASES = 166

#: Project targets (checked against the numbers, never assumed). Besides each
#: data set's Dice bar: LDSeg's Dice at least its same-budget Res-UNet's, and
#: its SD map finding wrong voxels better than the Res-UNet's own softmax.
HIPPOCAMPUS_DICE_TARGET = 0.88
GLAS_DICE_TARGET = 0.90  # the paper reports 0.91
SD_AUROC_TARGET = 0.85
#: Noise level at which LDSeg must lose less Dice than the baseline.
ROBUSTNESS_SIGMA = 0.2
#: LIDC (16 samples against the four raters): GED at most this, ECE below the
#: Res-UNet's, the SD map's AUROC for rater disagreement at least this and
#: above the Res-UNet's 1 - max probability.
GED_TARGET = 0.25
DISAGREEMENT_AUROC_TARGET = 0.85


class _DefaultModels:
    """The model and baseline a spec evaluates unless told otherwise: the first
    of its ``default_models`` / ``default_baselines`` that exists."""

    def default_model(self) -> Path:
        return _first_existing(self.default_models)

    def default_baseline(self) -> Path:
        return _first_existing(self.default_baselines)


@dataclass(frozen=True)
class DatasetSpec(_DefaultModels):
    key: str  # used in option and file names
    title: str
    folder: str  # below the data root
    first_test_case: int  # index into the sorted cases of ``folder``
    test_description: str
    dice_target: float
    distance_unit: str  # HD95 unit: mm, or pixels where the files carry no spacing
    default_models: tuple[str, ...]  # first existing one wins (relative to the repository)
    default_baselines: tuple[str, ...]

    @property
    def dice_target_text(self) -> str:
        return f"{self.key}: mean foreground Dice ≥ {self.dice_target:.2f}"

    def test_pairs(self, data_root: Path) -> list[CasePair]:
        return find_pairs(Path(data_root) / self.folder)[self.first_test_case :]


def _first_existing(candidates: tuple[str, ...]) -> Path:
    """The first candidate that exists, else the first (reported as missing)."""
    paths = [REPO_ROOT / c for c in candidates]
    return next((p for p in paths if p.is_file()), paths[0])


DATASETS = {
    "hippocampus": DatasetSpec(
        key="hippocampus",
        title="Hippocampus (3D T1 MR; anterior, posterior)",
        folder="hippocampus",
        first_test_case=HIPPOCAMPUS_TRAINING_CASES,
        test_description=(
            f"the sorted cases of `hippocampus/` after the first {HIPPOCAMPUS_TRAINING_CASES} "
            "(the models' training and validation cases): hippocampus_321 … hippocampus_393"
        ),
        dice_target=HIPPOCAMPUS_DICE_TARGET,
        distance_unit="mm",
        default_models=("Resources/Models/hippocampus.safetensors",),
        default_baselines=(
            "Resources/Baselines/hippocampus-resunet.safetensors",
            "runs/hippocampus-resunet.run/best.safetensors",
        ),
    ),
    "glas": DatasetSpec(
        key="glas",
        title="GlaS (2D H&E colon histology, RGB; gland)",
        folder="glas/testA",
        first_test_case=0,
        test_description="all of `glas/testA` (the GlaS challenge's test part A; the models train on `glas/train`)",
        dice_target=GLAS_DICE_TARGET,
        distance_unit="pixels",  # PNG files: spacing 1
        default_models=("Resources/Models/glas.safetensors", "runs/glas.safetensors"),
        default_baselines=("Resources/Baselines/glas-resunet.safetensors", "runs/glas-resunet.run/best.safetensors"),
    ),
}


@dataclass(frozen=True)
class RaterDatasetSpec(_DefaultModels):
    """A data set with several raters per case; the test patients come from a split file."""

    key: str
    title: str
    folder: str  # below the data root: images/ and rater1..M/
    split_file: Path  # JSON with "group_by" and the "test" groups (patients)
    default_models: tuple[str, ...]
    default_baselines: tuple[str, ...]

    def split(self) -> dict:
        return json.loads(self.split_file.read_text(encoding="utf-8"))

    def test_patients(self, every: int = 1) -> list[str]:
        """The recorded test patients, sorted; with ``every`` K only every K-th (the first, K+1-th, ...)."""
        return sorted(self.split()["test"])[::every]

    def test_pairs(self, data_root: Path, every: int = 1) -> list[CasePair]:
        wanted = set(self.test_patients(every))
        group_by = self.split()["group_by"]
        return [p for p in find_pairs(Path(data_root) / self.folder) if case_group(p.name, group_by) in wanted]


LIDC = RaterDatasetSpec(
    key="lidc",
    title="LIDC (2D CT lung nodule crops, four raters; nodule)",
    folder="lidc",
    split_file=REPO_ROOT / "docs" / "evaluation" / "lidc-split.json",
    default_models=("Resources/Models/lidc.safetensors",),
    default_baselines=("Resources/Baselines/lidc-resunet.safetensors",),
)


@dataclass(frozen=True)
class FewCasesSpec(_DefaultModels):
    """Models trained for a new task from a few cases, tested on a held-out data set.

    Their files are no shipped models and no baselines: given by option,
    with defaults in the (ignored) runs/ folder; missing ones are skipped.
    """

    key: str
    title: str
    test: DatasetSpec  # the held-out test cases
    training_description: str
    default_models: tuple[str, ...]
    default_baselines: tuple[str, ...]

    def test_pairs(self, data_root: Path) -> list[CasePair]:
        return self.test.test_pairs(data_root)


FEWCASES = FewCasesSpec(
    key="fewcases",
    title="New task from few cases (GlaS, 20 training images)",
    test=DATASETS["glas"],
    training_description=(
        "both architectures trained on 20 GlaS training images with the default `ldseg train` settings "
        "and `--time-budget 20`"
    ),
    default_models=("runs/fewcases-ldseg.safetensors",),
    default_baselines=("runs/fewcases-resunet.safetensors",),
)

#: Every part of the report that ``--datasets`` can select, in report order.
ALL_PARTS = (*DATASETS, LIDC.key, FEWCASES.key)
