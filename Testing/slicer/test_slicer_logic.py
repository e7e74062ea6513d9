"""The module logic's contracts: start failures end a job, the self-test without PyTorch, version
checks with real specifiers, a missing engine blocks, and the package split (Qt-free logic, thin module)."""

import ast
import os

import numpy as np
import pytest
from slicertesting import MODULE_DIR, loadVolume

from LDSegLib import dependencies, runner, sceneio, segment, selftest
from LDSegLib.logic import ModuleLogic
from LDSegLib.runner import RunState


def test_a_job_that_fails_to_start_ends_failed_and_stops_the_timer(scene, samples):
    volume = loadVolume(scene, samples / "prostate_phantom_subvolume.nrrd", name="prostate")
    roi = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "far away")
    roi.SetCenter(5000.0, 5000.0, 5000.0)
    roi.SetSize(10.0, 10.0, 10.0)
    nodes = scene.GetNumberOfNodes()
    job = ModuleLogic(scene, python="/no/such/python").segmentationJob(
        volume, segment.SegmentSettings(samples=1), roiNode=roi
    )
    with pytest.raises(ValueError, match="does not overlap"):
        job.start()
    assert job.finished and job.state == RunState.FAILED and not job.busy
    assert "does not overlap" in job.error and job.message.startswith("Failed:")
    assert not os.path.exists(job.workDir) and job.process is None
    ended, busy = runner.pollJobs([job, None])
    assert ended == [] and busy is False  # the widget's timer stops; nothing keeps blanking the status
    assert scene.GetNumberOfNodes() == nodes
    with pytest.raises(RuntimeError, match="ended"):
        job.start()  # a failed job is not reused


def test_default_input_is_a_volume_a_model_can_take(scene):
    logic = ModuleLogic(scene)
    assert logic.defaultInputVolume() is None
    scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "labels")
    rgb = scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", "rgb")
    assert logic.defaultInputVolume() is rgb


def reportWithout(*missingModules, engine=True):
    def findSpec(name):
        import importlib.util

        if name in missingModules:
            return None
        if name == "ldseg" and not engine:
            return None
        return importlib.util.find_spec(name)

    return dependencies.checkDependencies(findSpec=findSpec)


def test_self_test_without_pytorch_skips_the_engine_runs(scene):
    logs = []
    skipped = selftest.run(
        scene,
        log=logs.append,
        python="/no/such/python",  # an engine run would fail: none may start
        checkDependencies=lambda: reportWithout("torch"),
    )
    assert len(skipped) == 1 and "torch" in skipped[0]
    assert logs[0].startswith("Model list") and "Skipped the engine runs" in logs[-1]


def test_a_missing_engine_or_package_blocks_runs():
    assert reportWithout().blocking is None
    noTorch = reportWithout("torch")
    assert noTorch.torchMissing and noTorch.blocking == "Missing: torch>=2.1"
    noEngine = reportWithout(engine=False)
    assert noEngine.engineMissing and "Reinstall the LDSeg extension" in noEngine.blocking


@pytest.mark.parametrize(
    "version,spec,ok",
    [
        ("2.5.0", ">=2.1,<3", True),
        ("3.0.0", ">=2.1,<3", False),
        ("2.3.1", "==2.*", True),
        ("3.1", "==2.*", False),
        ("1.4.7", "~=1.4", True),
        ("2.0", "~=1.4", False),
        ("2.3.0", "!=2.3.0", False),
        ("2.13.0+cpu", ">=2.1", True),
        ("2.14.0.dev20260101", ">=2.1", True),
        ("2.1.0", "<=2.0", False),
        ("2.1.0", "not a specifier", False),
    ],
)
def test_version_checks_use_real_specifiers(version, spec, ok):
    assert dependencies.satisfies(version, spec) is ok


def test_engine_labels_are_kept_for_a_few_results(scene):
    logic = ModuleLogic(scene)

    class Done:
        succeeded = True

        def __init__(self, n):
            node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"s{n}")
            self.result = sceneio.ImportedResult(node, None, None, None, [], {}, np.full((2, 2, 2), n))

    jobs = [Done(n) for n in range(6)]
    for job in jobs:
        logic.segmentationDone(job)
    assert logic.engineLabels(jobs[0].result.segmentationNode) is None
    assert logic.engineLabels(jobs[-1].result.segmentationNode)[0, 0, 0] == 5


# --------------------------------------------------------------------------- package layout


def importedModules(path):
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_ldseglib_is_qt_free_and_the_module_file_thin():
    for path in (MODULE_DIR / "LDSegLib").glob("*.py"):
        imported = importedModules(path)
        qtish = {m for m in imported if m.split(".")[0] in ("qt", "ctk", "PythonQt", "LDSegWidgets")}
        assert not qtish and "slicer.ScriptedLoadableModule" not in imported, (path.name, qtish)
        uses = [
            n.lineno
            for n in ast.walk(ast.parse(path.read_text()))
            if isinstance(n, ast.Attribute) and n.attr in ("app", "modules") and getattr(n.value, "id", "") == "slicer"
        ]
        assert not uses, (path.name, uses)  # slicer.app / slicer.modules exist only in the application
    moduleFile = MODULE_DIR / "LDSeg.py"
    assert len(moduleFile.read_text().splitlines()) < 100
    users = [
        p.name
        for p in MODULE_DIR.rglob("*.py")
        if "LDSegWidgets" in importedModules(p) or any(m.startswith("LDSegWidgets.") for m in importedModules(p))
    ]
    assert users == ["LDSeg.py"]  # only the module file imports the widget package


def test_user_visible_strings_are_translatable_templates():
    """No f-string inside _(): the translation catalogue needs the literal text."""
    for path in (MODULE_DIR / "LDSeg.py", MODULE_DIR / "LDSegWidgets" / "widget.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "_":
                assert node.args and isinstance(node.args[0], ast.Constant), (path.name, node.lineno)
