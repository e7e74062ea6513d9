"""The benchmark scripts run end to end and write the JSON they promise."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_quick_benchmarks_run_and_write_json(tmp_path):
    out = tmp_path / "bench.json"
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "run_benchmarks.py"),
            "--quick",
            "--device",
            "cpu",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "seconds/image" in proc.stdout and "K=1000" in proc.stdout
    results = json.loads(out.read_text())
    assert set(results) >= {"meta", "machine", "configs", "large_inputs"}
    assert results["meta"]["quick"] is True
    for key in ("conv2d", "conv3d"):
        assert results["machine"][key]["fp32"]["gflops"] > 0 and results["machine"][key]["bf16"]["gflops"] > 0
    names = [c["name"] for c in results["configs"]]
    assert (
        any("shipped" in n for n in names)
        and any(n.startswith("2D") for n in names)
        and any(n.startswith("3D") for n in names)
    )
    for cfg in results["configs"]:
        assert "errors" not in cfg and "error" not in cfg, cfg.get("errors") or cfg.get("error")
        inf = cfg["inference"]
        assert [r["K"] for r in inf["steps"]] == [1, 2, 10, 1000]
        for row in inf["steps"]:
            assert row["total_s"] > 0 and {"encoder_s", "denoiser_s", "decoder_s", "extrapolated"} <= set(row)
        # the denoiser's cost grows with K; the encoder's and decoder's do not
        assert inf["steps"][-1]["denoiser_s"] > inf["steps"][0]["denoiser_s"]
        assert [r["N"] for r in inf["uncertainty"]] == [1, 10, 20, 100]
        assert inf["uncertainty"][0]["peak_rss_mb"] > 0 and not inf["uncertainty"][0]["extrapolated"]
        assert inf["decoder_flops"] > 0 and 0 < inf["decoder_share_of_conv_peak"]
        assert cfg["training"]["iterations_per_s"] > 0 and cfg["resunet_training"]["iterations_per_s"] > 0
        assert cfg["resunet"]["segment_s"] > 0
        ratios = cfg["ratio_ldseg_to_resunet"]
        assert ratios["segment_N1"] > 0 and ratios["training_seconds_per_iteration"] > 0
    big = results["large_inputs"][0]
    assert big["peak_rss_mb"] > 0 and big["output_mb"] > 0 and "error" not in big


def test_fast_vs_fp32_on_one_test_case(shared_data, tmp_path):
    spec = importlib.util.spec_from_file_location("fast_vs_fp32", REPO / "benchmarks" / "fast_vs_fp32.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "fvf.json"
    code = module.main(
        [
            "--data",
            str(shared_data / "hippocampus"),
            "--limit",
            "1",
            "--samples",
            "3",
            "--device",
            "cpu",
            "--json",
            str(out),
        ]
    )
    summary = json.loads(out.read_text())
    assert summary["cases"] == ["hippocampus_321"]  # the first case of the test split
    assert [c["name"] for c in summary["classes"]] == ["anterior", "posterior"]
    assert summary["passed"] and code == 0
    assert summary["max_abs_dice_difference"] <= 0.005 and summary["sd_pearson_pooled"] >= 0.95
