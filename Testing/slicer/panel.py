"""Load the module's .ui with PySide6 (offscreen) and save a picture of the panel.

Slicer's CTK / qMRML widget classes do not exist outside Slicer; the same-named stand-ins
below (registered with QUiLoader) take their properties so the panel renders as real widgets.
Run: python Testing/slicer/panel.py  (writes docs/panel.png)
"""

import os
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import (  # noqa: E402
    Property,
    QFile,
    QIODevice,
    Qt,  # noqa: E402
)
from PySide6.QtUiTools import QUiLoader  # noqa: E402
from PySide6.QtWidgets import (  # noqa: E402
    QApplication,
    QComboBox,
    QDoubleSpinBox,
    QGroupBox,
    QHBoxLayout,
    QLineEdit,
    QSlider,
    QTableWidgetItem,
    QWidget,
)

REPO = Path(__file__).resolve().parents[2]
UI_FILE = REPO / "LDSegExtension" / "LDSeg" / "Resources" / "UI" / "LDSeg.ui"
PANEL_PNG = REPO / "docs" / "panel.png"


class ctkCollapsibleButton(QGroupBox):  # noqa: N801 -- Slicer's class name
    def __init__(self, parent=None):
        super().__init__(parent)
        self._collapsed = False
        self._text = ""

    def _getText(self):
        return self._text

    def _setText(self, text):
        self._text = text
        self.setTitle(("\u25b8 " if self._collapsed else "\u25be ") + text)

    def _getCollapsed(self):
        return self._collapsed

    def _setCollapsed(self, collapsed):
        self._collapsed = bool(collapsed)
        self._setText(self._text)
        for child in self.findChildren(QWidget, options=Qt.FindDirectChildrenOnly):
            child.setVisible(not self._collapsed)

    text = Property(str, _getText, _setText)
    collapsed = Property(bool, _getCollapsed, _setCollapsed)


class qMRMLWidget(QWidget):  # noqa: N801
    pass


class qMRMLNodeComboBox(QComboBox):  # noqa: N801
    def __init__(self, parent=None):
        super().__init__(parent)
        self._noneEnabled = False

    def _getNone(self):
        return self._noneEnabled

    def _setNone(self, value):
        self._noneEnabled = bool(value)
        if value and self.count() == 0:
            self.addItem("None")

    noneEnabled = Property(bool, _getNone, _setNone)


class ctkPathLineEdit(QLineEdit):  # noqa: N801
    pass


class ctkSliderWidget(QWidget):  # noqa: N801
    def __init__(self, parent=None):
        super().__init__(parent)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.slider = QSlider(Qt.Horizontal)
        self.spin = QDoubleSpinBox()
        layout.addWidget(self.slider, 1)
        layout.addWidget(self.spin)
        self.spin.valueChanged.connect(self._sync)

    def _sync(self, value):
        span = (self.spin.maximum() - self.spin.minimum()) or 1.0
        self.slider.setValue(int(round(1000 * (value - self.spin.minimum()) / span)))

    def _prop(name):  # noqa: N805
        def get(self):
            return getattr(self.spin, name)()

        def set_(self, value):
            getattr(self.spin, "set" + name[0].upper() + name[1:])(value)
            self.slider.setRange(0, 1000)
            self._sync(self.spin.value())

        return get, set_

    minimum = Property(float, *_prop("minimum"))
    maximum = Property(float, *_prop("maximum"))
    value = Property(float, *_prop("value"))
    singleStep = Property(float, *_prop("singleStep"))
    decimals = Property(int, *_prop("decimals"))
    pageStep = Property(float, lambda self: 0.1, lambda self, v: None)


STAND_INS = (ctkCollapsibleButton, qMRMLWidget, qMRMLNodeComboBox, ctkPathLineEdit, ctkSliderWidget)


def application():
    return QApplication.instance() or QApplication([])


def loadPanel(uiFile=UI_FILE):
    """The .ui loaded as Slicer's loadUI would (stand-ins for CTK/qMRML classes). Returns (widget, errors)."""
    application()
    loader = QUiLoader()
    for cls in STAND_INS:
        loader.registerCustomWidget(cls)
    f = QFile(str(uiFile))
    if not f.open(QIODevice.ReadOnly):
        raise OSError(f"cannot open {uiFile}")
    try:
        widget = loader.load(f)
    finally:
        f.close()
    if widget is not None:  # collapse once the children exist (the loader sets properties first)
        for button in widget.findChildren(ctkCollapsibleButton):
            button.collapsed = button.collapsed
    return widget, loader.errorString()


def fillDemo(
    panel,
    reviewRows=(),
    modelLabel="Hippocampus (MSD Task04)",
    modelSummary="",
    device="cpu",
    regionText="",
    statusText="",
):
    """Values a user sees after one run, for the picture."""
    find = lambda cls, name: panel.findChild(cls, name)  # noqa: E731
    find(QComboBox, "inputVolumeSelector").addItem("prostate_phantom")
    find(QComboBox, "roiSelector").addItem("R")
    find(QComboBox, "modelSelector").addItem(modelLabel)
    panel.findChild(QWidget, "modelInfoLabel").setText(modelSummary)
    for name, items in (("deviceComboBox", ["auto", "cuda", "cpu"]),):
        find(QComboBox, name).addItems(items)
    for name, text in (
        ("segmentationSelector", "prostate_phantom LDSeg"),
        ("uncertaintySelector", "prostate_phantom LDSeg uncertainty (SD)"),
    ):
        find(QComboBox, name).addItem(text)
        find(QComboBox, name).setCurrentIndex(find(QComboBox, name).count() - 1)
    panel.findChild(QWidget, "segmentButton").setEnabled(True)
    panel.findChild(QWidget, "progressBar").setValue(100)
    panel.findChild(QWidget, "statusLabel").setText(statusText)
    panel.findChild(QWidget, "deviceUsedLabel").setText(device)
    if device.startswith("cpu"):
        from LDSegLib.segment import CPU_WARNING

        warning = panel.findChild(QWidget, "cpuWarningLabel")
        warning.setText(CPU_WARNING)
        warning.setVisible(True)
    table = panel.findChild(QWidget, "reviewTable")
    from LDSegLib.review import TABLE_HEADER

    table.setColumnCount(len(TABLE_HEADER))
    table.setHorizontalHeaderLabels(TABLE_HEADER)
    table.setRowCount(len(reviewRows))
    for r, cells in enumerate(reviewRows):
        for c, text in enumerate(cells):
            table.setItem(r, c, QTableWidgetItem(text))
    table.resizeColumnsToContents()
    panel.findChild(QWidget, "regionLabel").setText(regionText)
    # a run with "Keep individual samples": the samples controls enabled, sample 2 of the 10 shown
    panel.findChild(QWidget, "keepSamplesCheckBox").setChecked(True)
    for name in (
        "showSampleCheckBox",
        "sampleSlider",
        "sampleSpinBox",
        "showFrequencyCheckBox",
        "frequencyClassComboBox",
    ):
        panel.findChild(QWidget, name).setEnabled(True)
    for name in ("sampleSlider", "sampleSpinBox"):
        panel.findChild(QWidget, name).setMaximum(10)
    panel.findChild(QWidget, "sampleSpinBox").setSuffix(" of 10")
    panel.findChild(QWidget, "sampleSpinBox").setValue(2)
    panel.findChild(QWidget, "showSampleCheckBox").setChecked(True)
    find(QComboBox, "frequencyClassComboBox").addItems([r[0] for r in reviewRows])
    panel.findChild(QWidget, "samplesLabel").setText("Showing sample 2 of 10 as outlines.")
    panel.findChild(QWidget, "trainingFolderEdit").setText("~/data/my-labeled-cases")
    panel.findChild(QWidget, "fineTuneButton").setEnabled(True)


def savePanelPicture(panel, path=PANEL_PNG, width=460):
    panel.resize(width, panel.sizeHint().height())
    panel.adjustSize()
    panel.resize(width, max(panel.sizeHint().height(), panel.height()))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not panel.grab().save(str(path)):
        raise OSError(f"could not write {path}")
    return path


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(REPO / "LDSegExtension" / "LDSeg"))
    widget, errors = loadPanel()
    fillDemo(widget)
    print(savePanelPicture(widget))
