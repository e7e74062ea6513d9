"""Fixtures of the Slicer extension's tests (run without Slicer, on slicer-core's real MRML).

Helpers live in slicertesting.py (import them from there, not from ``conftest``: the name
"conftest" belongs to Testing/conftest.py, whose tests import from it).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import slicertesting  # first: imports slicer safely (see there)

if slicertesting.slicer is None:
    pytest.skip("slicer-core is not installed (pip install -r requirements-slicer-test.txt)", allow_module_level=True)

from slicertesting import HIPPOCAMPUS, SAMPLES  # noqa: E402
from slicescene import makeScene  # noqa: E402

from LDSegLib import runner, segment  # noqa: E402

_PARENT_CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"


def pytest_plugin_registered(plugin, manager):
    """pytest imports every folder's conftest.py as the module "conftest", the last one winning.
    Give the name back to Testing/conftest.py (its tests do `from conftest import ...`)."""
    path = getattr(plugin, "__file__", None)
    if path and Path(path).resolve() == _PARENT_CONFTEST:
        sys.modules["conftest"] = plugin


@pytest.fixture
def scene():
    scene = makeScene()
    yield scene
    scene.Clear(True)


@pytest.fixture
def samples():
    if not SAMPLES.is_dir():
        pytest.skip(f"sample volumes not found at {SAMPLES} (set LDSEG_DATA)")
    return SAMPLES


@pytest.fixture(scope="session")
def engineEnv(tmp_path_factory):
    """Environment of real engine runs, with a private user model folder ($LDSEG_HOME)."""
    reason = slicertesting.engineUnusableReason()
    if reason:
        pytest.skip(reason)
    home = tmp_path_factory.mktemp("ldseg-home")
    return runner.engineEnvironment({**os.environ, "LDSEG_HOME": str(home)})


@pytest.fixture(scope="session")
def tinyModel(engineEnv, tmp_path_factory):
    """A real (tiny, barely trained) 3D model written by `ldseg train` (about 15 s), and its `ldseg info`."""
    if not (HIPPOCAMPUS / "images").is_dir():
        pytest.skip(f"hippocampus data not found at {HIPPOCAMPUS} (set LDSEG_DATA)")
    dataset = tmp_path_factory.mktemp("tiny-dataset")
    for sub in ("images", "labels"):
        (dataset / sub).mkdir()
        for n in ("001", "003", "004"):
            (dataset / sub / f"hippocampus_{n}.nii.gz").symlink_to(HIPPOCAMPUS / sub / f"hippocampus_{n}.nii.gz")
    model = tmp_path_factory.mktemp("tiny-model") / "tiny.safetensors"
    done = subprocess.run(
        runner.engineCommand(sys.executable)
        + [
            "train",
            str(dataset),
            "-o",
            str(model),
            "--size",
            "tiny",
            "--grid",
            "16",
            "16",
            "16",
            "--epochs",
            "1",
            "--batch-size",
            "2",
            "--val-fraction",
            "0.34",
            "--name",
            "tiny",
            "--lr",
            "1e-4",
            "--precision",
            "fp32",  # bf16 autocast on CPU gave an all-NaN tiny model now and then
            "--title",
            "Tiny test model",
            "--run-dir",
            str(model.parent / "run"),
            "--progress",
            "none",
        ],
        env=engineEnv,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    info = json.loads(runner.runEngineQuick(["info", str(model), "--json"], python=sys.executable, env=engineEnv))
    return segment.ModelInfo.fromJson({**info, "path": str(model)})
