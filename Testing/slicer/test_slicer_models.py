"""The model list as the module builds it: in-process, without torch, with the shipped catalogue.

The first test runs the module's listing in a fresh Python where ``import torch`` fails (a
``sys.meta_path`` blocker), as right after installing the extension from the Extensions Manager.
"""

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import pytest
from slicertesting import MODULE_DIR, REPO, slicer

from LDSegLib import dependencies, logic, models, terminology

MODELS_DIR = REPO / "Resources" / "Models"

NO_TORCH = textwrap.dedent(
    """
    import json, sys

    class NoTorch:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError("torch is blocked in this test")
            return None

    sys.meta_path.insert(0, NoTorch())
    try:
        import torch  # noqa: F401
        raise SystemExit("torch could be imported")
    except ImportError:
        pass
    sys.path.insert(0, sys.argv[1])
    from LDSegLib import models
    listed = models.listModels()
    assert not any(m == "torch" or m.startswith("torch.") for m in sys.modules), "torch was imported"
    print(json.dumps([{"name": m.name, "source": m.source, "dims": m.dims, "card": m.card, "error": m.error,
                       "terminology": m.terminologyByName(), "classes": [c["name"] for c in m.classes]}
                      for m in listed]))
    """
)


def test_model_list_works_without_torch(tmp_path):
    env = {**os.environ, "LDSEG_HOME": str(tmp_path)}  # no user models
    done = subprocess.run(
        [sys.executable, "-c", NO_TORCH, str(MODULE_DIR)], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    listed = {m["name"]: m for m in json.loads(done.stdout.strip().splitlines()[-1])}
    assert {"hippocampus", "glas"} <= set(listed)
    for name in ("hippocampus", "glas"):
        m = listed[name]
        assert m["source"] == "shipped" and not m["error"]
        assert os.path.basename(m["card"]) == f"{name}.md"
        assert set(m["terminology"]) == set(m["classes"]) - {"background"}  # every foreground class coded


def test_listing_runs_no_process(monkeypatch):
    """In-process: no engine subprocess (the old code ran `ldseg models --json` on the GUI thread)."""

    def refuse(*args, **kwargs):
        raise AssertionError("the model list started a process")

    monkeypatch.setattr(subprocess, "Popen", refuse)
    monkeypatch.setattr(subprocess, "run", refuse)
    listed = models.listModels()
    assert [m.name for m in listed if m.source == "shipped"][:2] == ["glas", "hippocampus"]


def test_catalogue_agrees_with_the_model_files():
    from ldseg.config import _validate_terminology
    from ldseg.io.models import list_models

    catalogue = models.readCatalogue(str(MODELS_DIR))
    shipped = {m["name"]: m for m in list_models() if m["source"] == "shipped"}
    assert set(catalogue) == set(shipped)
    for name, entry in catalogue.items():
        header = shipped[name]
        assert entry["file"] == os.path.basename(header["path"])
        assert (MODELS_DIR / entry["card"]).is_file()
        assert (entry["title"], entry["modality"], entry["dims"], entry["channels"]) == (
            header["title"],
            header["modality"],
            header["dims"],
            header["channels"],
        )
        assert entry["classes"] == [c["name"] for c in header["classes"] if c["label_value"] != 0]
        assert entry["input"] and entry["cpu_seconds"] > 0
        for className, code in entry["terminology"].items():
            assert className in entry["classes"]
            _validate_terminology(className, code)  # the engine's own rule for class_terminology


def test_terminology_strings_parse_with_slicers_terminology_logic():
    """Each catalogue code, serialized as the module sets it, reads back through Slicer's own parser."""
    terminologyLogic = slicer.vtkSlicerTerminologiesModuleLogic()
    for entry in models.readCatalogue(str(MODELS_DIR)).values():
        for code in entry["terminology"].values():
            text = terminology.serialize(code)
            parsed = slicer.vtkSlicerTerminologyEntry()
            assert terminologyLogic.DeserializeTerminologyEntry(text, parsed), text
            assert parsed.GetCategoryObject().GetCodeValue() == code["category"][1]
            assert parsed.GetTypeObject().GetCodeValue() == code["type"][1]
            assert parsed.GetTypeObject().GetCodeMeaning() == code["type"][2]
            if "type_modifier" in code:
                assert parsed.GetTypeModifierObject().GetCodeValue() == code["type_modifier"][1]
            if "region" in code:
                region = (
                    parsed.GetRegionObject() if hasattr(parsed, "GetRegionObject") else parsed.GetAnatomicRegionObject()
                )
                assert region.GetCodeValue() == code["region"][1]


def fakeEntries(tmp_path):
    """What list_models gives for a shipped model and a user model fine-tuned from it (twice)."""
    shipped = tmp_path / "shipped"
    shipped.mkdir(exist_ok=True)
    (shipped / "base.md").write_text("# base card")
    (shipped / models.CATALOGUE_FILE).write_text(
        json.dumps(
            {
                "catalogue_version": 1,
                "models": [
                    {
                        "name": "base",
                        "card": "base.md",
                        "input": "a crop",
                        "cpu_seconds": 3.0,
                        "terminology": {"organ": {"category": ["SCT", "1", "C"], "type": ["SCT", "2", "T"]}},
                    }
                ],
            }
        )
    )
    classes = [{"index": 0, "name": "background", "label_value": 0}, {"index": 1, "name": "organ", "label_value": 1}]
    return [
        {"name": "base", "path": str(shipped / "base.safetensors"), "source": "shipped", "classes": classes},
        {
            "name": "mine",
            "path": str(tmp_path / "user" / "mine.safetensors"),
            "source": "user",
            "classes": [dict(c) for c in classes],
            "training": {
                "fine_tuned_from": "again.safetensors",
                "base_training": {"fine_tuned_from": "base.safetensors"},
            },
        },
    ]


def test_user_models_listed_like_shipped_ones(tmp_path):
    base, mine = models.listModels(lambda: fakeEntries(tmp_path))
    assert base.card.endswith("base.md") and base.input == "a crop" and base.cpuSeconds == 3.0
    assert base.terminologyByName()["organ"]["type"] == ["SCT", "2", "T"]
    # two fine-tuning rounds away from the shipped model: its card and terminology still apply
    assert mine.label == "mine (yours)" and mine.baseModel == "base"
    assert mine.card == base.card and mine.terminologyByName() == base.terminologyByName()
    assert "Fine-tuned from: base" in mine.summary() and "organ (T)" in mine.summary()


def test_failed_listing_is_reported_not_raised():
    def broken():
        raise models.EngineMissingError("The LDSeg engine (ldseg) could not be loaded")

    moduleLogic = logic.ModuleLogic(listFunction=broken)
    assert moduleLogic.refreshModels() == [] and "could not be loaded" in moduleLogic.modelListError


def test_the_list_is_read_again_after_an_install(tmp_path, monkeypatch):
    calls = []

    def listing():
        calls.append(1)
        return fakeEntries(tmp_path)[:1] if len(calls) == 1 else fakeEntries(tmp_path)

    moduleLogic = logic.ModuleLogic(listFunction=listing)
    assert [m.name for m in moduleLogic.refreshModels()] == ["base"]
    missingTorch = dependencies.checkDependencies(
        findSpec=lambda n: None if n == "torch" else importlib.util.find_spec(n)
    )
    reports = iter([missingTorch, dependencies.checkDependencies()])
    monkeypatch.setattr(dependencies, "checkDependencies", lambda: next(reports))
    installed = []
    report = moduleLogic.ensureDependencies(
        confirm=lambda text: True,
        pipInstall=lambda args: None,
        installTorch=lambda spec: installed.append(spec) or True,
    )
    assert installed == [">=2.1"] and report.ok
    assert [m.name for m in moduleLogic.models] == ["base", "mine"]  # refreshed after the install


@pytest.mark.parametrize("name", ["hippocampus", "glas"])
def test_shipped_model_summary_shows_catalogue(name):
    model = next(m for m in models.listModels() if m.name == name and m.source == "shipped")
    text = model.summary()
    assert "Input:" in text and "2-core CPU" in text
    assert model.terminologyByName()
