"""Slicer 5.8, the oldest supported, runs Python 3.9: the module and the engine it starts must too.

vermin checks syntax and standard-library use of every shipped file against 3.9 (scripts/test.sh
runs it as well); where a Python 3.9 interpreter is on the machine, every file is also compiled
with it and the torch-free parts of the module are imported.
"""

import glob
import os
import shutil
import subprocess
import sys

import pytest
from slicertesting import MODULE_DIR, REPO

SHIPPED = [str(REPO / "LDSegCore" / "ldseg"), str(REPO / "LDSegExtension")]


def python39():
    candidates = [shutil.which("python3.9")] + sorted(glob.glob("/root/.pyenv/versions/3.9*/bin/python3.9"))
    for candidate in filter(None, candidates):
        done = subprocess.run(
            [candidate, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True, text=True
        )
        if done.returncode == 0 and done.stdout.strip() == "(3, 9)":
            return candidate
    return None


def test_shipped_files_need_at_most_python_39():
    vermin = shutil.which("vermin") or os.path.join(os.path.dirname(sys.executable), "vermin")
    if not os.path.exists(vermin):
        pytest.skip("vermin is not installed (pip install -e .[test])")
    args = [vermin, "--no-tips", "--violations", "--eval-annotations", "--target=3.9-"]
    done = subprocess.run(args + SHIPPED, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-1000:]
    # and it does catch a 3.10 feature
    bad = REPO / "out" / "vermin-probe.py"
    bad.parent.mkdir(exist_ok=True)
    bad.write_text("pairs = list(zip([1], [2], strict=True))\n")
    try:
        assert subprocess.run(args + [str(bad)], capture_output=True, text=True).returncode != 0
    finally:
        bad.unlink()


def test_compiles_and_imports_with_a_real_python_39(tmp_path):
    python = python39()
    if python is None:
        pytest.skip("no Python 3.9 interpreter on this machine")
    files = [f for folder in SHIPPED for f in glob.glob(os.path.join(folder, "**", "*.py"), recursive=True)]
    compile39 = (
        "import py_compile, sys\n"
        "for n, f in enumerate(sys.argv[2:]):\n"
        "    py_compile.compile(f, cfile=f'{sys.argv[1]}/{n}.pyc', doraise=True)\n"
    )
    done = subprocess.run([python, "-c", compile39, str(tmp_path)] + files, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(files) > 60
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); "
        "from LDSegLib import models, terminology; "
        "print(terminology.serialize({'category': ['SCT', '1', 'C'], 'type': ['SCT', '2', 'T']})); "
        "print(models.listModels(lambda: [{'name': 'm', 'path': '/x/m.safetensors', 'classes': []}])[0].label)"
    )
    done = subprocess.run([python, "-c", code, str(MODULE_DIR)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "SCT^2^T" in done.stdout and done.stdout.split()[-1] == "m"
