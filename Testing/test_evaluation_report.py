"""scripts/evaluation_report.py: the test split, verdicts computed from the
numbers, and (integration) the whole report on two real hippocampus cases."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ldseg.architectures import build_network
from ldseg.config import ModelConfig, Preprocessing
from ldseg.io.modelfile import save_model
from ldseg.io.modelheader import read_config
from ldseg.training.presets import network_preset

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"
SHIPPED_MODEL = REPO / "Resources" / "Models" / "hippocampus.safetensors"
sys.path.insert(0, str(SCRIPTS))

from evalreport.datasets import DATASETS  # noqa: E402
from evalreport.summaries import dataset_targets  # noqa: E402


def test_hippocampus_test_split_is_the_42_cases_after_the_training_ones(shared_data):
    pairs = DATASETS["hippocampus"].test_pairs(shared_data)
    names = [p.name for p in pairs]
    assert len(names) == 42
    assert names[0] == "hippocampus_321" and names[-1] == "hippocampus_393"
    training = read_config(SHIPPED_MODEL).training
    assert not set(names) & (set(training["train_names"]) | set(training["val_names"]))
    assert len(DATASETS["glas"].test_pairs(shared_data)) == 60


def _summary(dice, ldseg_loss, baseline_loss, auroc):
    noise = {"ldseg": {"dice_lost": ldseg_loss}}
    if baseline_loss is not None:
        noise["baseline"] = {"dice_lost": baseline_loss}
    return {"ldseg": {"dice_mean": {"mean": dice}}, "noise": noise, "uncertainty": {"pooled_auroc": auroc}}


def test_target_verdicts_follow_the_numbers():
    spec = DATASETS["glas"]
    good = dataset_targets(spec, _summary(0.91, 0.02, 0.20, 0.90), "", "")
    assert [t["status"] for t in good] == ["reached"] * 3
    assert good[0]["value"] == "0.910"
    bad = dataset_targets(spec, _summary(0.87, 0.20, 0.02, 0.84), "", "")
    assert [t["status"] for t in bad] == ["not reached"] * 3
    no_baseline = dataset_targets(spec, _summary(0.9, 0.02, None, 0.9), "", "first 2 test cases only")
    assert no_baseline[0]["status"] == "reached (first 2 test cases only)"
    assert no_baseline[1]["status"] == "not measured (no baseline model)"
    skipped = dataset_targets(spec, None, "model not found", "")
    assert all(t["status"] == "not measured (model not found)" for t in skipped)


def _tiny_resunet(path):
    """An untrained Res-UNet with the hippocampus classes: exercises the baseline path."""
    torch.manual_seed(0)
    config = ModelConfig(
        preprocessing=Preprocessing(dims=3, channels=1, grid=(16, 24, 16), label_values=(0, 1, 2)),
        class_names=("background", "anterior", "posterior"),
        name="tiny-resunet",
        network=network_preset("tiny", image_attention=False),
        architecture="resunet",
    )
    save_model(path, config, build_network(config).state_dict())
    return path


@pytest.mark.integration
def test_report_end_to_end_on_two_hippocampus_cases(shared_data, tmp_path):
    baseline = _tiny_resunet(tmp_path / "tiny-resunet.safetensors")
    out = tmp_path / "docs"
    command = [
        sys.executable,
        str(SCRIPTS / "evaluation_report.py"),
        "--datasets",
        "hippocampus",
        "--limit",
        "2",
        "--samples",
        "4",
        "--step-counts",
        "1",
        "2",
        "50",
        "--slow-cases",
        "1",
        "--sigmas",
        "0",
        "0.2",
        "--threads",
        "1",
        "--device",
        "cpu",
        "--data",
        str(shared_data),
        "--hippocampus-model",
        str(SHIPPED_MODEL),
        "--hippocampus-baseline",
        str(baseline),
        "--out",
        str(out),
    ]
    done = subprocess.run(
        command, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr

    report = (out / "evaluation.md").read_text(encoding="utf-8")
    for heading in (
        "## Targets",
        "## Model files",
        "### 1. Accuracy",
        "### 2. Sampling steps",
        "### 3. Robustness to image noise",
        "### 4. Uncertainty",
        "### 5. Ablation",
        "**Not run**: the ablation",
    ):
        assert heading in report
    assert "--limit 2" in report and "not test-set results" in report
    assert "**Not run: not selected (--datasets)**" in report  # GlaS
    assert "`Resources/Models/hippocampus.safetensors`" in report

    figures = out / "evaluation"
    for name in ("hippocampus-steps.png", "hippocampus-noise.png", "hippocampus-uncertainty-example.png"):
        data = (figures / name).read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 5000
        assert f"(evaluation/{name})" in report

    rows = list(csv.DictReader((figures / "hippocampus-ldseg-cases.csv").open()))
    assert [r["case"] for r in rows] == ["hippocampus_321", "hippocampus_322"]
    results = json.loads((figures / "hippocampus-results.json").read_text())
    summary = results["summary"]
    # the shipped model segments these cases well; an untrained baseline does not
    assert 0.6 < summary["ldseg"]["dice_mean"]["mean"] <= 1.0
    assert 0.0 <= summary["baseline"]["dice_mean"]["mean"] <= 1.0
    assert 0.0 < summary["ldseg"]["hd95_mean"]["mean"] < 20.0
    # the SD map ranks wrong voxels above right ones
    assert 0.7 < summary["uncertainty"]["pooled_auroc"] <= 1.0
    steps = {r["variant"]: r for r in summary["steps"]}
    assert steps["DDIM K=2"]["cases"] == 2 and not steps["DDIM K=2"]["subset"]
    assert steps["DDIM K=50"]["cases"] == 1 and steps["DDIM K=50"]["subset"]
    assert steps["DDIM K=1"]["dice"]["mean"] == pytest.approx(steps["single-step estimate"]["dice"]["mean"])
    assert all(r["seconds"]["mean"] > 0 for r in summary["steps"])
    noise = summary["noise"]
    assert [lv["sigma"] for lv in noise["ldseg"]["levels"]] == [0.0, 0.2]
    assert noise["ldseg"]["levels"][0]["dice"]["mean"] == pytest.approx(summary["ldseg"]["dice_mean"]["mean"])

    targets = json.loads((figures / "report.json").read_text())["targets"]
    hippocampus = [t for t in targets if t["dataset"] == "hippocampus"]
    assert len(hippocampus) == 3
    assert all(t["status"].endswith("(first 2 test cases only)") for t in hippocampus)
