"""The extension's CMake: every module file listed, and an install puts the engine next to the module.

Configured against a stand-in of the Slicer SDK (cmake_stub/: only the macros our CMake calls), so
this checks our file lists and install layout, not Slicer's build system itself.
"""

import os
import re
import shutil
import subprocess
import sys

import pytest
from slicertesting import MODULE_DIR, REPO

STUB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cmake_stub")


def listedFiles():
    text = (MODULE_DIR / "CMakeLists.txt").read_text().replace("${MODULE_NAME}", "LDSeg")
    block = lambda name: re.search(rf"set\({name}\s+(.*?)\)", text, re.S).group(1).split()  # noqa: E731
    return block("MODULE_PYTHON_SCRIPTS"), block("MODULE_PYTHON_RESOURCES")


def test_every_module_file_is_listed():
    scripts, resources = listedFiles()
    onDisk = sorted(str(p.relative_to(MODULE_DIR)) for p in MODULE_DIR.rglob("*.py") if "__pycache__" not in p.parts)
    assert sorted(scripts) == onDisk
    assert sorted(resources) == ["Resources/Icons/LDSeg.png", "Resources/UI/LDSeg.ui"]
    top = (REPO / "CMakeLists.txt").read_text()
    for key in (
        "EXTENSION_HOMEPAGE",
        "EXTENSION_CONTRIBUTORS",
        "EXTENSION_DESCRIPTION",
        "EXTENSION_ICONURL",
        "EXTENSION_SCREENSHOTURLS",
    ):
        assert f"set({key} " in top
    assert 'set(EXTENSION_CATEGORY "Segmentation")' in top and 'set(EXTENSION_DEPENDS "PyTorch")' in top
    assert "add_subdirectory(LDSegExtension/LDSeg)" in top
    moduleCmake = (MODULE_DIR / "CMakeLists.txt").read_text()
    assert "WITH_GENERIC_TESTS" in moduleCmake and "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in moduleCmake
    from PIL import Image

    assert Image.open(MODULE_DIR / "Resources" / "Icons" / "LDSeg.png").size == (128, 128)


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake is not installed")
def test_install_layout_puts_engine_next_to_module(tmp_path):
    build, prefix = tmp_path / "build", tmp_path / "install"
    build.mkdir()
    run = lambda *args: subprocess.run(args, cwd=build, capture_output=True, text=True)  # noqa: E731
    done = run("cmake", str(REPO), f"-DSlicer_DIR={STUB}", "-DBUILD_TESTING=ON", f"-DCMAKE_INSTALL_PREFIX={prefix}")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "unittest registered: LDSeg.py" in done.stdout
    done = run("cmake", "--install", ".")
    assert done.returncode == 0, done.stderr[-2000:]
    lib = prefix / "lib" / "Slicer-5.9" / "qt-scripted-modules"
    scripts, resources = listedFiles()
    for f in scripts + resources:
        assert (lib / f).is_file(), f
    engine = sorted(
        str(p.relative_to(REPO / "LDSegCore"))
        for p in (REPO / "LDSegCore" / "ldseg").rglob("*.py")
        if "__pycache__" not in p.parts
    )
    for f in engine:
        assert (lib / f).is_file(), f
    # the shipped models with their cards and the catalogue the model list reads
    shipped = lib / "ldseg" / "shipped_models"
    for name in ("hippocampus", "glas"):
        assert (shipped / f"{name}.safetensors").is_file() and (shipped / f"{name}.md").is_file()
    assert (shipped / "catalogue.json").is_file()
    # the installed module finds the installed engine (not the development copy) and runs it
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); from LDSegLib import runner, dependencies, models; "
        "print(runner.enginePackageDir()); print(dependencies.engineVersion()); "
        "print(' '.join(m.card for m in models.listModels() if m.source == 'shipped'))"
    )
    env = {**os.environ, "LDSEG_HOME": str(tmp_path / "home")}
    out = subprocess.run([sys.executable, "-c", code, str(lib)], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    packageDir, version, *cards = out.stdout.split()
    assert os.path.samefile(packageDir, lib)
    assert version == __import__("ldseg").__version__
    assert cards and all(os.path.dirname(card) == str(shipped) for card in cards)  # cards from the install


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake is not installed")
def test_older_slicer_is_refused_at_configure_time(tmp_path):
    done = subprocess.run(
        ["cmake", str(REPO), f"-DSlicer_DIR={STUB}", "-DLDSEG_STUB_SLICER_VERSION=5.6.2"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0 and "LDSeg needs Slicer 5.8 or later (found 5.6)" in done.stderr
