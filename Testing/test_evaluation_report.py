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

from conftest import make_model_file  # noqa: E402
from evalreport.datasets import DATASETS, FEWCASES, LIDC  # noqa: E402
from evalreport.summaries import dataset_targets, rater_targets, versus_baseline_target  # noqa: E402


def test_hippocampus_test_split_is_the_42_cases_after_the_training_ones(shared_data):
    pairs = DATASETS["hippocampus"].test_pairs(shared_data)
    names = [p.name for p in pairs]
    assert len(names) == 42
    assert names[0] == "hippocampus_321" and names[-1] == "hippocampus_393"
    training = read_config(SHIPPED_MODEL).training
    assert not set(names) & (set(training["train_names"]) | set(training["val_names"]))
    assert len(DATASETS["glas"].test_pairs(shared_data)) == 60


def _summary(dice, ldseg_loss, baseline_loss, auroc, baseline_dice=0.88, softmax_auroc=0.85):
    """A dataset summary; baseline_loss None: no baseline model."""
    summary = {
        "ldseg": {"dice_mean": {"mean": dice}},
        "noise": {"ldseg": {"dice_lost": ldseg_loss}},
        "uncertainty": {"pooled_auroc": auroc},
        "detectors": [{"model": "ldseg", "score": "sd", "pooled_auroc": auroc}],
    }
    if baseline_loss is not None:
        summary["noise"]["baseline"] = {"dice_lost": baseline_loss}
        summary["baseline"] = {"dice_mean": {"mean": baseline_dice}}
        summary["detectors"].append({"model": "baseline", "score": "doubt", "pooled_auroc": softmax_auroc})
    return summary


def test_target_verdicts_follow_the_numbers():
    spec = DATASETS["glas"]  # Dice bar 0.90
    good = dataset_targets(spec, _summary(0.91, 0.02, 0.20, 0.90), "", "")
    assert [t["status"] for t in good] == ["reached"] * 5
    assert good[0]["value"] == "0.910" and good[0]["target"] == "glas: mean foreground Dice ≥ 0.90"
    assert good[1]["value"] == "LDSeg 0.910 vs Res-UNet 0.880"
    assert good[4]["value"] == "LDSeg SD 0.900 vs Res-UNet 0.850 (pooled)"
    # below both Dice bars; more Dice lost; SD under 0.85 and under the softmax
    bad = dataset_targets(spec, _summary(0.89, 0.20, 0.02, 0.84, baseline_dice=0.895), "", "")
    assert [t["status"] for t in bad] == ["not reached"] * 5
    # the SD map above 0.85 is not enough: it must beat the Res-UNet's softmax
    close = dataset_targets(spec, _summary(0.91, 0.02, 0.20, 0.90, softmax_auroc=0.90), "", "")
    assert [t["status"] for t in close] == ["reached"] * 4 + ["not reached"]
    no_baseline = dataset_targets(spec, _summary(0.9, 0.02, None, 0.9), "", "first 2 test cases only")
    assert no_baseline[0]["status"] == "reached (first 2 test cases only)"
    assert [t["status"] for t in no_baseline[1:]] == [
        "not measured (no baseline model)",
        "not measured (no baseline model)",
        "reached (first 2 test cases only)",
        "not measured (no baseline model)",
    ]
    assert dataset_targets(DATASETS["hippocampus"], _summary(0.89, 0.02, 0.2, 0.9), "", "")[0]["status"] == "reached"
    skipped = dataset_targets(spec, None, "model not found", "")
    assert len(skipped) == 5 and all(t["status"] == "not measured (model not found)" for t in skipped)


def test_few_cases_target_compares_the_two_architectures():
    summary = {"ldseg": {"dice_mean": {"mean": 0.71}}, "baseline": {"dice_mean": {"mean": 0.73}}}
    target = versus_baseline_target(FEWCASES, summary, "")
    assert target["status"] == "not reached" and target["value"] == "LDSeg 0.710 vs Res-UNet 0.730"
    summary["ldseg"]["dice_mean"]["mean"] = 0.73
    assert versus_baseline_target(FEWCASES, summary, "")["status"] == "reached"  # a tie is not a loss
    del summary["baseline"]
    assert versus_baseline_target(FEWCASES, summary, "")["status"] == "not measured (no baseline model)"


def _rater_summary(ged, ece, auroc, base_ece=None, base_auroc=None):
    models = {"ldseg": {"cases": {"ged": {"mean": ged}}, "ece": ece, "disagreement_auroc": auroc}}
    if base_ece is not None:
        models["baseline"] = {"cases": {"ged": {"mean": 0.5}}, "ece": base_ece, "disagreement_auroc": base_auroc}
    return {"models": models}


def test_lidc_target_verdicts_follow_the_numbers():
    good = rater_targets(LIDC, _rater_summary(0.24, 0.01, 0.90, 0.02, 0.80), "", "")
    assert [t["status"] for t in good] == ["reached"] * 3
    assert good[0]["value"] == "0.240"
    # above 0.85 but not above the Res-UNet's; ECE equal is not lower; GED above the bar
    bad = rater_targets(LIDC, _rater_summary(0.26, 0.02, 0.90, 0.02, 0.91), "", "every 4-th test patient")
    assert [t["status"] for t in bad] == ["not reached (every 4-th test patient)"] * 3
    alone = rater_targets(LIDC, _rater_summary(0.2, 0.01, 0.80), "", "")
    assert [t["status"] for t in alone] == ["reached", "not measured (no baseline model)", "not reached"]
    skipped = rater_targets(LIDC, None, "model not found", "")
    assert all(t["status"] == "not measured (model not found)" for t in skipped)


def test_lidc_test_split_and_its_every_kth_patient_subset(shared_data):
    patients = LIDC.test_patients()
    assert len(patients) == 79 and patients == sorted(patients)
    assert LIDC.test_patients(4) == patients[::4] and len(LIDC.test_patients(4)) == 20
    pairs = LIDC.test_pairs(shared_data)
    assert len(pairs) == 1634 and all(len(p.labels) == 4 for p in pairs[:5])
    subset = LIDC.test_pairs(shared_data, 4)
    assert {p.name.split("_")[0] for p in subset} == set(patients[::4])
    # model files are never defaults under docs/, and the few-cases ones are no baselines
    assert LIDC.default_models == ("Resources/Models/lidc.safetensors",)
    assert LIDC.default_baselines == ("Resources/Baselines/lidc-resunet.safetensors",)
    assert all(p.startswith("runs/") for p in FEWCASES.default_models + FEWCASES.default_baselines)


def _tiny_resunet(
    path, dims=3, grid=(16, 24, 16), label_values=(0, 1, 2), names=("background", "anterior", "posterior")
):
    """An untrained Res-UNet (by default with the hippocampus classes): exercises the baseline path."""
    torch.manual_seed(0)
    config = ModelConfig(
        preprocessing=Preprocessing(dims=dims, channels=1, grid=grid, label_values=label_values),
        class_names=names,
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
        "### 5. Error detectors",
        "### 6. Autoencoder ceiling",
        "### 7. Ablation",
        "**Not run on the test set**: the variants",
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
    assert len(hippocampus) == 5  # Dice bar, against the Res-UNet, noise, SD AUROC bar, against the softmax
    assert all(t["status"].endswith("(first 2 test cases only)") for t in hippocampus)

    # error detectors: each model's scores against its own errors; the SD row is the section-4 AUROC
    detectors = {(r["model"], r["score"]): r for r in summary["detectors"]}
    assert set(detectors) == {("ldseg", k) for k in ("sd", "doubt", "entropy", "boundary")} | {
        ("baseline", k) for k in ("doubt", "entropy", "boundary")
    }
    assert detectors[("ldseg", "sd")]["pooled_auroc"] == summary["uncertainty"]["pooled_auroc"]
    assert detectors[("ldseg", "boundary")]["wrong_voxels"] == summary["uncertainty"]["wrong_voxels"]
    assert all(0.0 <= r["pooled_auroc"] <= 1.0 for r in summary["detectors"])
    # the shipped model's latent holds these labels better than chance, and it is per case
    assert 0.7 < summary["ceiling"]["dice_mean"]["mean"] <= 1.0
    assert (figures / "hippocampus-ceiling-cases.csv").is_file()
    assert "**Not run: not selected (--datasets)**" in report.split("## LIDC")[1]


@pytest.mark.integration
def test_report_lidc_and_few_cases_parts_end_to_end(shared_data, tmp_path):
    """Untrained tiny models: the multi-rater and few-cases paths run and write their files."""
    ldseg = make_model_file(
        tmp_path / "lidc-tiny.safetensors",
        dims=2,
        grid=(32, 32),
        label_values=(0, 255),
        class_names=("background", "nodule"),
    )
    baseline = _tiny_resunet(tmp_path / "lidc-resunet.safetensors", 2, (32, 32), (0, 255), ("background", "nodule"))
    glas = make_model_file(
        tmp_path / "glas-tiny.safetensors",
        dims=2,
        channels=3,
        grid=(32, 32),
        label_values=(0, 255),
        class_names=("background", "gland"),
    )
    out = tmp_path / "docs"
    command = [sys.executable, str(SCRIPTS / "evaluation_report.py"), "--datasets", "lidc", "fewcases"]
    command += ["--limit", "2", "--samples", "2", "--lidc-samples", "3", "--lidc-every", "5", "--threads", "1"]
    command += ["--device", "cpu", "--data", str(shared_data), "--out", str(out)]
    command += ["--lidc-model", str(ldseg), "--lidc-baseline", str(baseline), "--fewcases-model", str(glas)]
    command += ["--fewcases-baseline", str(tmp_path / "missing.safetensors")]
    done = subprocess.run(
        command, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    report = (out / "evaluation.md").read_text(encoding="utf-8")
    lidc = report.split("## LIDC")[1].split("## New task")[0]
    for text in ("### 1. Against the raters", "### 2. Error detectors", "### 3. Autoencoder ceiling"):
        assert text in lidc
    assert "every 5-th test patient" in lidc
    assert "LIDC: N = 3 samples, every 5-th test patient" in report.split("## ")[0]  # the header's settings row
    figures = out / "evaluation"
    for name in ("lidc-ldseg-reliability.png", "lidc-baseline-reliability.png"):
        assert (figures / name).read_bytes().startswith(b"\x89PNG") and f"(evaluation/{name})" in lidc
    results = json.loads((figures / "lidc-results.json").read_text())
    assert results["cases"][0].startswith(LIDC.test_patients(5)[0])
    models = results["summary"]["models"]
    assert models["ldseg"]["uncertainty_map"] == "sd" and models["baseline"]["uncertainty_map"] != "sd"
    # the Res-UNet's N copies: no diversity of its own
    assert models["baseline"]["cases"]["sample_diversity"]["mean"] == 0.0
    for name in ("ldseg", "baseline"):
        cases = models[name]["cases"]
        assert 0.0 <= cases["ged"]["mean"] <= 2.0 and 0.0 <= cases["dice_vs_raters"]["mean"] <= 1.0
    lidc_targets = [t for t in json.loads((figures / "report.json").read_text())["targets"] if t["dataset"] == "lidc"]
    assert len(lidc_targets) == 3 and all("first 2 test slices only" in t["status"] for t in lidc_targets)

    few = report.split("## New task")[1]
    assert "missing.safetensors` not found: not run." in few
    rows = list(csv.DictReader((figures / "fewcases-ldseg-cases.csv").open()))
    assert [r["case"] for r in rows] == ["testA_1", "testA_10"]
    few_targets = [
        t for t in json.loads((figures / "report.json").read_text())["targets"] if t["dataset"] == "fewcases"
    ]
    assert [t["status"] for t in few_targets] == ["not measured (no baseline model)"]
    assert "## Hippocampus" in report and "**Not run: not selected (--datasets)**" in report


def _two_case_glas_copy(shared_data: Path, root: Path) -> Path:
    """A data root holding only testA_1 and testA_10 of glas/testA (linked)."""
    for sub in ("images", "labels"):
        (root / "glas" / "testA" / sub).mkdir(parents=True)
        for name in ("testA_1.png", "testA_10.png"):
            (root / "glas" / "testA" / sub / name).symlink_to(shared_data / "glas" / "testA" / sub / name)
    return root


def _report(args: list[str]) -> subprocess.CompletedProcess:
    command = [sys.executable, str(SCRIPTS / "evaluation_report.py"), *args, "--threads", "1", "--device", "cpu"]
    return subprocess.run(
        command, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=600
    )


@pytest.mark.integration
def test_report_keeps_the_parts_not_selected_from_the_earlier_report(shared_data, tmp_path):
    """--keep-others: one part made anew, the earlier report's other parts kept as they were."""
    glas = make_model_file(
        tmp_path / "glas-tiny.safetensors",
        dims=2,
        channels=3,
        grid=(32, 32),
        label_values=(0, 255),
        class_names=("background", "gland"),
    )
    data = _two_case_glas_copy(shared_data, tmp_path / "data")  # a full part on two cases: no --limit
    out, missing = tmp_path / "docs", str(tmp_path / "missing.safetensors")
    common = ["--samples", "2", "--data", str(data), "--out", str(out)]
    first = _report(["--datasets", "fewcases", *common, "--fewcases-model", str(glas), "--fewcases-baseline", missing])
    assert first.returncode == 0, first.stderr
    figures = out / "evaluation"
    before = json.loads((figures / "report.json").read_text())
    few_before = "## New task" + (out / "evaluation.md").read_text(encoding="utf-8").split("## New task")[1]
    assert set(before["parts"]) == {"fewcases"}

    second = ["--datasets", "glas", "--keep-others", *common, "--glas-model", str(glas), "--glas-baseline", missing]
    second += ["--step-counts", "1", "2", "--slow-cases", "1", "--sigmas", "0", "0.2"]
    done = _report(second)
    assert done.returncode == 0, done.stderr
    report = (out / "evaluation.md").read_text(encoding="utf-8")
    assert "## New task" + report.split("## New task")[1] == few_before
    after = json.loads((figures / "report.json").read_text())
    for key in ("targets", "models"):
        assert [t for t in after[key] if t["dataset"] == "fewcases"] == [
            t for t in before[key] if t["dataset"] == "fewcases"
        ]
    assert after["parts"]["fewcases"] == before["parts"]["fewcases"]
    assert set(after["parts"]) == {"glas", "fewcases"}  # the parts never run stay not selected
    assert "--datasets glas --keep-others" in after["parts"]["glas"]["command"]
    glas_section = report.split("## GlaS")[1].split("## LIDC")[0]
    assert "### 1. Accuracy" in glas_section and "**Not run:" not in glas_section
    assert "**Not run: not selected (--datasets)**" in report.split("## LIDC")[1].split("## New task")[0]
    header = report.split("## Targets")[0]
    assert "min for the parts run now" in header
    assert f"| Kept from an earlier run | fewcases: {before['parts']['fewcases']['date_utc']}, `" in header


def _report_files(folder: Path, record) -> tuple[Path, Path]:
    (folder / "evaluation").mkdir(parents=True, exist_ok=True)
    text = "# LDSeg evaluation report\n\n## Targets\n\n## GlaS (x)\n\nglas text\n\n\n## LIDC (y)\n\nlidc text\n"
    (folder / "evaluation.md").write_text(text)
    (folder / "evaluation" / "report.json").write_text(json.dumps(record))
    return folder / "evaluation.md", folder / "evaluation" / "report.json"


def test_keep_others_takes_each_part_from_its_heading_to_the_next_part():
    from evalreport.previous import split_sections

    text = "# R\n\n## Targets\n\nt\n\n## GlaS (x)\n\nA\n\n### 1. Accuracy\n\nB\n\n\n## LIDC (y)\n\nC\n"
    parts = split_sections(text, {"glas": "GlaS (x)", "lidc": "LIDC (y)", "fewcases": "New (z)"})
    assert parts == {
        "glas": ["## GlaS (x)", "", "A", "", "### 1. Accuracy", "", "B", ""],
        "lidc": ["## LIDC (y)", "", "C", ""],
    }


def test_keep_others_refuses_a_missing_quick_check_or_inconsistent_earlier_report(tmp_path):
    from evalreport.previous import kept_parts

    from ldseg.errors import InputError

    titles = {"glas": "GlaS (x)", "lidc": "LIDC (y)"}
    with pytest.raises(InputError, match="evaluation.md not found"):
        kept_parts(tmp_path / "evaluation.md", tmp_path / "evaluation" / "report.json", titles, ["lidc"])
    machine = {"date_utc": "2026-12-01 10:00 UTC", "command": "python r.py", "git": "abc", "device": "cpu"}
    report, record = _report_files(tmp_path / "quick", {"machine": machine, "limit": 2})
    with pytest.raises(InputError, match="--limit quick check"):
        kept_parts(report, record, titles, ["lidc"])
    parts = {"lidc": machine, "fewcases": machine}  # fewcases made there, but its section is gone
    report, record = _report_files(tmp_path / "odd", {"machine": machine, "parts": parts})
    with pytest.raises(InputError, match="no section for its fewcases part"):
        kept_parts(report, record, {**titles, "fewcases": "New (z)"}, ["lidc", "fewcases"])
    # a report from before parts were recorded: its machine made every part
    targets = [{"dataset": "lidc", "target": "t"}, {"dataset": "glas", "target": "u"}]
    report, record = _report_files(tmp_path / "old", {"machine": machine, "targets": targets, "limit": None})
    kept = kept_parts(report, record, titles, ["lidc"])
    assert list(kept) == ["lidc"] and kept["lidc"].targets == [targets[0]]
    assert kept["lidc"].made_by["date_utc"] == machine["date_utc"] and kept["lidc"].lines[-2] == "lidc text"


def test_keep_others_with_a_missing_earlier_report_writes_nothing(tmp_path):
    out = tmp_path / "docs"
    command = [sys.executable, str(SCRIPTS / "evaluation_report.py"), "--datasets", "glas", "--keep-others"]
    done = subprocess.run(command + ["--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: --keep-others needs the earlier report: {out}/evaluation.md not found"
    ]
    assert not out.exists()
