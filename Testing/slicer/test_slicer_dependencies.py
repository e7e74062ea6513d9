"""Dependency check and installation policy: ask first, never touch Slicer's SimpleITK / numpy / VTK,
say clearly when module and engine versions disagree."""

import importlib.util
from pathlib import Path

import pytest
import tomllib

from LDSegLib import MODULE_VERSION, dependencies

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_requirements_mirror_the_engine_package():
    declared = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    declared = {d.split(">")[0].split("=")[0].split("<")[0].strip(): d for d in declared}
    ours = {r.distribution: r.pip for r in dependencies.ENGINE_REQUIREMENTS}
    expected = {name: spec for name, spec in declared.items() if name not in dependencies.PROTECTED}
    assert ours == expected
    assert set(declared) - set(ours) <= set(dependencies.PROTECTED)


def test_this_environment_is_ready():
    report = dependencies.checkDependencies()
    assert report.ok, report.describe()
    assert report.engineVersion is not None and report.torchVersion
    assert report.describe().startswith("Ready")


def test_version_mismatch_is_explained():
    assert dependencies.versionMismatch("0.1.0", "0.1.7") is None
    message = dependencies.versionMismatch("0.2.0", "0.1.3")
    assert "0.2.0" in message and "0.1.3" in message and "Extensions Manager" in message
    assert "engine is older" in message
    assert "module is older" in dependencies.versionMismatch("0.1.0", "1.0.0")
    assert "not installed" in dependencies.versionMismatch(MODULE_VERSION, None)
    # the engine found without importing it (no torch import in Slicer's GUI process)
    assert dependencies.engineVersion() == __import__("ldseg").__version__


def hideTorch(name):
    return None if name == "torch" else importlib.util.find_spec(name)


def test_missing_torch_asks_first_and_uses_the_pytorch_extension():
    report = dependencies.checkDependencies(findSpec=hideTorch)
    assert [r.distribution for r in report.missing] == ["torch"] and not report.ok
    calls = []

    # declined: nothing installed, nothing run
    installed = dependencies.installMissing(
        report,
        confirm=lambda text: calls.append(("ask", text)) or False,
        pipInstall=lambda args: calls.append(("pip", args)),
        installTorch=lambda spec: calls.append(("torch", spec)),
    )
    assert installed == [] and [c[0] for c in calls] == ["ask"]
    assert "PyTorch" in calls[0][1] and "SimpleITK, numpy and VTK stay as they are" in calls[0][1]

    # accepted: torch through the PyTorch extension's installer, pip not used
    calls.clear()
    installed = dependencies.installMissing(
        report,
        confirm=lambda text: True,
        pipInstall=lambda args: calls.append(("pip", args)),
        installTorch=lambda spec: calls.append(("torch", spec)) or object(),
    )
    assert calls == [("torch", ">=2.1")] and installed == ["torch>=2.1"]


def test_pip_installs_are_pinned_against_replacing_slicer_packages():
    everything = dependencies.DependencyReport(
        missing=[
            dependencies.Requirement("nibabel", "nibabel", ">=5.0"),
            dependencies.Requirement("numpy", "numpy", ">=9.0"),
            dependencies.Requirement("SimpleITK", "SimpleITK", ">=9.0"),
        ],
        outdated=[(dependencies.Requirement("scikit-image", "skimage", ">=0.21"), "0.19.0")],
        engineVersion=MODULE_VERSION,
        mismatch=None,
        torchVersion="2.3.0",
    )
    seen = {}

    def pip(args):
        seen["args"] = list(args)
        seen["constraints"] = Path(args[1]).read_text().split()

    installed = dependencies.installMissing(everything, confirm=lambda text: True, pipInstall=pip)
    assert installed == ["nibabel>=5.0", "scikit-image>=0.21"]  # never numpy / SimpleITK themselves
    assert seen["args"][0] == "-c" and seen["args"][2:] == installed
    pins = dict(line.split("==") for line in seen["constraints"])
    for name in ("numpy", "SimpleITK", "vtk"):
        version = dependencies.installedVersion(name)
        if version:
            assert pins[name] == version
    assert "numpy" in pins and "SimpleITK" in pins


@pytest.mark.parametrize(
    "version,spec,ok",
    [("2.1.0", ">=2.1", True), ("2.0.1", ">=2.1", False), ("2.13.0+cpu", ">=2.1", True), ("0.26.0", ">=0.21", True)],
)
def test_version_specifiers(version, spec, ok):
    assert dependencies.satisfies(version, spec) is ok
