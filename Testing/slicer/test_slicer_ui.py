"""The module's .ui: loads offscreen with PySide6, holds every widget the module names, binds to the
parameter node with widget types Slicer's connectGui can serve, and gives a picture of the panel."""

import ast
import pathlib
import typing
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import SimpleITK as sitk
from slicertesting import DOCS, MODULE_DIR, loadVolume, syntheticSd, writeEngineOutputs

pytest.importorskip(
    "PySide6", reason="PySide6-Essentials is not installed (pip install -r requirements-slicer-test.txt)"
)

import panel  # noqa: E402

from LDSegLib import parameters, review, sceneio  # noqa: E402

UI = MODULE_DIR / "Resources" / "UI" / "LDSeg.ui"
WIDGET_FILE = MODULE_DIR / "LDSegWidgets" / "widget.py"


def uiNamesUsedByModule():
    """Every ``self.ui.NAME`` the module's widget code touches."""
    names = set()
    for node in ast.walk(ast.parse(WIDGET_FILE.read_text())):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Attribute)
            and node.value.attr == "ui"
            and isinstance(node.value.value, ast.Name)
            and node.value.value.id == "self"
        ):
            names.add(node.attr)
    return names


def uiWidgets():
    root = ET.parse(UI).getroot()
    return {w.get("name"): w for w in root.iter("widget")}


@pytest.fixture(scope="module")
def loaded():
    widget, errors = panel.loadPanel()
    assert widget is not None, errors
    return widget


def test_ui_loads_offscreen_with_every_named_widget(loaded):
    from PySide6.QtCore import QObject

    used = uiNamesUsedByModule()
    assert len(used) > 20  # the module really wires the panel (bound widgets come on top)
    missing = sorted(n for n in used if loaded.findChild(QObject, n) is None)
    assert not missing, f"widgets named in LDSegWidgets/widget.py but absent from LDSeg.ui: {missing}"
    # and the classes are what the code expects of them
    widgets = uiWidgets()
    expected = {
        "segmentButton": "QPushButton",
        "progressBar": "QProgressBar",
        "modelSelector": "QComboBox",
        "reviewTable": "QTableWidget",
        "trainingCasesList": "QListWidget",
        "trainingLog": "QPlainTextEdit",
        "trainingFolderEdit": "ctkPathLineEdit",
        "nextRegionButton": "QPushButton",
        "previousRegionButton": "QPushButton",
        "fineTuneButton": "QPushButton",
        "keepSamplesCheckBox": "QCheckBox",
        "showSampleCheckBox": "QCheckBox",
        "sampleSlider": "QSlider",
        "sampleSpinBox": "QSpinBox",
        "showFrequencyCheckBox": "QCheckBox",
        "frequencyClassComboBox": "QComboBox",
        "samplesLabel": "QLabel",
    }
    assert {n: widgets[n].get("class") for n in expected} == expected
    sections = [
        w.findtext("property[@name='text']/string")
        for w in widgets.values()
        if w.get("class") == "ctkCollapsibleButton"
    ]
    assert sections == ["Segment", "Results && Review", "Fine-tune", "Settings"]  # && shows as &


def test_samples_controls_start_disabled_and_slider_and_spin_box_move_together(loaded):
    from PySide6.QtWidgets import QCheckBox, QComboBox, QSlider, QSpinBox

    slider, spinBox = loaded.findChild(QSlider, "sampleSlider"), loaded.findChild(QSpinBox, "sampleSpinBox")
    showSample, showFrequency = (
        loaded.findChild(QCheckBox, n) for n in ("showSampleCheckBox", "showFrequencyCheckBox")
    )
    classes = loaded.findChild(QComboBox, "frequencyClassComboBox")
    # until a result with samples is selected (the widget enables them then)
    assert not any(w.isEnabled() for w in (slider, spinBox, showSample, showFrequency, classes))
    bindings = {w.get("name"): w.findtext("property[@name='SlicerParameterName']/string") for w in uiWidgets().values()}
    assert bindings["keepSamplesCheckBox"] == "saveSamples" and bindings["sampleSpinBox"] == "sampleNumber"
    assert bindings["showSampleCheckBox"] == "showSample" and bindings["showFrequencyCheckBox"] == "showFrequency"
    slider.setMaximum(10)
    spinBox.setMaximum(10)
    spinBox.setSuffix(" of 10")
    slider.setValue(4)
    assert spinBox.value() == 4 and spinBox.text() == "Sample 4 of 10"
    spinBox.setValue(7)
    assert slider.value() == 7
    spinBox.setValue(1)
    for w in (slider, spinBox):
        w.setMaximum(1)


def test_parameter_bindings_match_the_parameter_node():
    bound = {}
    for name, w in uiWidgets().items():
        prop = w.find("property[@name='SlicerParameterName']")
        if prop is not None:
            bound[prop.findtext("string")] = (name, w.get("class"))
    assert set(bound) <= set(parameters.PARAMETER_NAMES)
    # set in code, not bound: the model (from the list); the cases folder is bound (a saved scene restores it)
    assert set(parameters.PARAMETER_NAMES) - set(bound) == {"model"}
    hints = typing.get_type_hints(parameters.LDSegParameterNode, include_extras=True)
    for field, (name, cls) in bound.items():
        hint = hints[field]
        base = typing.get_origin(hint) is typing.Annotated and typing.get_args(hint)[0] or hint
        extras = typing.get_args(hint)[1:] if typing.get_origin(hint) is typing.Annotated else ()
        if base is bool:
            assert cls == "QCheckBox", field
        elif base is int:
            assert cls == "QSpinBox", field
        elif base is float:  # connectGui needs a bounded float for ctkSliderWidget
            assert cls in ("ctkSliderWidget", "QDoubleSpinBox"), field
            assert any(isinstance(e, parameters.WithinRange) for e in extras), field
        elif base is str:  # a QComboBox needs a Choice
            assert cls == "QComboBox" and any(isinstance(e, parameters.Choice) for e in extras), field
        elif base is pathlib.Path:  # connectGui serves a ctkPathLineEdit for a pathlib.Path
            assert cls == "ctkPathLineEdit", field
        else:  # a node or a union of nodes: the .ui lists the same types the wrapper will set
            assert cls == "qMRMLNodeComboBox", field
            nodeTypes = [s.text for s in uiWidgets()[name].findall("property[@name='nodeTypes']/stringlist/string")]
            names = [a.__name__ for a in typing.get_args(base) if a is not type(None)] or [base.__name__]
            assert nodeTypes == names, field


def test_panel_picture(loaded, scene, samples, tmp_path):
    """docs/panel.png: the panel after a run, with review rows computed by the module's logic."""
    inputPath = samples / "prostate_phantom_subvolume.nrrd"
    volume = loadVolume(scene, inputPath, name="prostate")
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(samples / "prostate_phantom_subvolume-label.nrrd")))
    result = writeEngineOutputs(tmp_path / "out", inputPath, labels.astype(np.int16), syntheticSd(labels.shape))
    imported = sceneio.importResults(scene, volume, result)
    rows = [s.row() for s in review.segmentStatistics(imported.segmentationNode, imported.uncertaintyVolumeNode, 0.1)]
    navigator = review.UncertainRegionNavigator(review.uncertainRegions(imported.uncertaintyVolumeNode, 0.1))
    navigator.next()
    panel.fillDemo(
        loaded,
        rows,
        modelLabel="Prostate phantom (example classes)",
        modelSummary="3D · 1 channel · MR\nClasses: " + ", ".join(r[0] for r in rows),
        regionText=navigator.describe(),
        statusText="Done (engine-format result of the prostate phantom).",
    )
    path = panel.savePanelPicture(loaded, DOCS / "panel.png")
    from PIL import Image

    image = np.asarray(Image.open(path).convert("RGB"))
    assert image.shape[1] >= 460 and image.shape[0] > 600
    assert image.std() > 20  # a real drawing, not a blank grab
