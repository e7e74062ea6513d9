"""``ldseg evaluate``, ``info`` and ``models``."""

import csv
import json

import pytest
from conftest import make_model_file

from ldseg.cli.main import main
from ldseg.evaluation.metrics import dice_per_class
from ldseg.inference.segmenter import Segmenter
from ldseg.io.images import read_label


def test_evaluate_writes_per_case_table_and_summary(shared_data, tmp_path, capsys):
    model = make_model_file(
        tmp_path / "hip.safetensors",
        grid=(16, 24, 16),
        label_values=(0, 1, 2),
        class_names=("background", "anterior", "posterior"),
    )
    cases = ["hippocampus_001", "hippocampus_003"]
    out = tmp_path / "eval"
    assert (
        main(
            [
                "evaluate",
                str(model),
                str(shared_data / "hippocampus"),
                "-o",
                str(out),
                "--cases",
                *cases,
                "--progress",
                "none",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    rows = list(csv.DictReader((out / "cases.csv").open()))
    assert [r["case"] for r in rows] == cases
    assert {"dice_anterior", "dice_posterior", "iou_anterior", "hd95_posterior", "dice_mean"} <= set(rows[0])
    # the table's Dice is the Dice of what `segment` gives for that case
    seg = Segmenter(model, device="cpu")
    result = seg.segment(shared_data / "hippocampus" / "images" / f"{cases[0]}.nii.gz")  # the same defaults (N = 10)
    ref, _ = read_label(shared_data / "hippocampus" / "labels" / f"{cases[0]}.nii.gz")
    expected = dice_per_class(result.classes, ref, 3)
    assert float(rows[0]["dice_anterior"]) == pytest.approx(expected[1])
    assert float(rows[0]["dice_posterior"]) == pytest.approx(expected[2])
    summary = json.loads((out / "summary.json").read_text())["summary"]
    assert summary["dice_mean"]["n"] == 2
    assert "dice_mean" in capsys.readouterr().out


def test_info_and_models(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LDSEG_HOME", str(tmp_path))
    (tmp_path / "models").mkdir()
    make_model_file(
        tmp_path / "models" / "mine.safetensors",
        dims=2,
        channels=3,
        grid=(32, 32),
        label_values=(0, 255),
        class_names=("background", "gland"),
    )
    assert main(["info", "mine", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["dims"] == 2 and info["channels"] == 3
    assert [c["label_value"] for c in info["classes"]] == [0, 255]
    assert main(["models", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert any(m["name"] == "mine" and m["source"] == "user" for m in listed)
    assert main(["info", "no-such-model"]) == 2
    assert "no model named 'no-such-model'" in capsys.readouterr().err
