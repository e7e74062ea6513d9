"""The two evaluated data sets: where their test cases are, which models are
evaluated by default, and the project's targets.

The test splits are defined here and nowhere else in the report code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ldseg.data.dataset import CasePair, find_pairs

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA_ROOT = REPO_ROOT.parent / "shared" / "data"

#: The hippocampus models are trained with ``ldseg train --cases 166``: the
#: first 166 cases in sorted order (hippocampus_001 ... hippocampus_320). The
#: remaining 42 (hippocampus_321 ... hippocampus_393) are the test set.
HIPPOCAMPUS_TRAINING_CASES = 166

#: Project targets (checked against the numbers, never assumed).
DICE_TARGET = 0.88
SD_AUROC_TARGET = 0.85
#: Noise level at which LDSeg must lose less Dice than the baseline.
ROBUSTNESS_SIGMA = 0.2


@dataclass(frozen=True)
class DatasetSpec:
    key: str  # used in option and file names
    title: str
    folder: str  # below the data root
    first_test_case: int  # index into the sorted cases of ``folder``
    test_description: str
    dice_target_text: str
    distance_unit: str  # HD95 unit: mm, or pixels where the files carry no spacing
    default_models: tuple[str, ...]  # first existing one wins (relative to the repository)
    default_baselines: tuple[str, ...]

    def test_pairs(self, data_root: Path) -> list[CasePair]:
        return find_pairs(Path(data_root) / self.folder)[self.first_test_case :]

    def default_model(self) -> Path:
        return _first_existing(self.default_models)

    def default_baseline(self) -> Path:
        return _first_existing(self.default_baselines)


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
        dice_target_text=f"hippocampus mean foreground Dice ≥ {DICE_TARGET}",
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
        dice_target_text=f"GlaS testA gland Dice ≥ {DICE_TARGET}",
        distance_unit="pixels",  # PNG files: spacing 1
        default_models=("Resources/Models/glas.safetensors", "runs/glas.safetensors"),
        default_baselines=("Resources/Baselines/glas-resunet.safetensors", "runs/glas-resunet.run/best.safetensors"),
    ),
}
