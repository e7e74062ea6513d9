"""The model list: shipped and user models, read in-process from their file headers (no torch).

The engine's :func:`ldseg.io.models.list_models` reads each model file's JSON header only, and
imports no torch, so the list is there right after installing the extension, before PyTorch is
(the install-with-consent step comes when the user clicks Segment). It runs in Slicer's own
process: no engine process and no timeout on the GUI thread.

The shipped models' catalogue (``catalogue.json`` beside them) adds the model card, the input
the model expects, a measured time and the standard terminology of each class. A user's model
(fine-tuned from a shipped one) inherits its base's card and terminology.
"""

import dataclasses
import json
import os

from . import terminology

CATALOGUE_FILE = "catalogue.json"
CATALOGUE_VERSION = 1


class EngineMissingError(RuntimeError):
    """The engine package (ldseg) cannot be imported next to the module."""


def engineListModels():
    """The engine's own torch-free lister (imported on first use; raises EngineMissingError)."""
    try:
        from ldseg.io.models import list_models
    except ImportError as e:
        raise EngineMissingError(
            f"The LDSeg engine (ldseg) could not be loaded ({e}). Reinstall the LDSeg extension."
        ) from None
    return list_models


@dataclasses.dataclass
class ModelInfo:
    """A model as the engine's model list describes it, with its catalogue entry merged in."""

    name: str
    path: str
    title: str = ""
    description: str = ""
    dims: int = 0
    channels: int = 1
    modality: str = ""
    classes: list = dataclasses.field(default_factory=list)
    source: str = ""
    error: str = ""
    training: dict = dataclasses.field(default_factory=dict)
    card: str = ""  # model card (Markdown file), own or the base model's
    input: str = ""  # what the model expects, from the catalogue
    cpuSeconds: float = 0.0  # measured time of one run on a 2-core CPU (catalogue)
    baseModel: str = ""  # the shipped model it was fine-tuned from

    @classmethod
    def fromJson(cls, data):
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in fields and v is not None})

    @property
    def label(self):
        origin = " (yours)" if self.source == "user" else ""
        return f"{self.title or self.name}{origin}"

    @property
    def foregroundClasses(self):
        return [c for c in self.classes if int(c.get("label_value", 1)) != 0]

    def terminologyByName(self):
        """{class name: terminology entry} of the classes that have one."""
        return {str(c["name"]): c["terminology"] for c in self.classes if c.get("terminology")}

    def summary(self):
        if self.error:
            return f"Unusable: {self.error}"
        names = []
        for c in self.foregroundClasses:
            standard = terminology.describe(c.get("terminology"))
            names.append(f"{c['name']} ({standard})" if standard and standard.lower() != str(c["name"]) else c["name"])
        channels = "RGB" if self.channels == 3 else f"{self.channels} channel" + ("s" if self.channels != 1 else "")
        lines = [
            f"{self.dims}D · {channels} · {self.modality or 'any modality'}",
            f"Classes: {', '.join(names) or '-'}",
        ]
        if self.input:
            lines.append(f"Input: {self.input}")
        if self.cpuSeconds:
            lines.append(f"About {self.cpuSeconds:.0f} s per run on a 2-core CPU (10 samples); faster on a GPU.")
        if self.baseModel:
            lines.append(f"Fine-tuned from: {self.baseModel}")
        return "\n".join(lines)


# --------------------------------------------------------------------------- catalogue


def readCatalogue(folder):
    """{model name: entry} of ``folder/catalogue.json`` ({} when absent). Raises ValueError if malformed."""
    path = os.path.join(folder, CATALOGUE_FILE)
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, dict) or int(data.get("catalogue_version", 0)) != CATALOGUE_VERSION:
        raise ValueError(f"{path}: not a version {CATALOGUE_VERSION} LDSeg model catalogue")
    entries = {}
    for entry in data.get("models", []):
        for entryTerminology in entry.get("terminology", {}).values():
            terminology.checkEntry(entryTerminology)
        entries[str(entry["name"])] = dict(entry, folder=folder)
    return entries


def _baseNames(training):
    """Names of the models this one was fine-tuned from, nearest first (from the training summary)."""
    names = []
    while isinstance(training, dict) and training.get("fine_tuned_from"):
        names.append(os.path.splitext(os.path.basename(str(training["fine_tuned_from"])))[0])
        training = training.get("base_training")
    return names


def _mergeCatalogue(model, catalogue):
    own = catalogue.get(model.name) if model.source == "shipped" else None
    bases = [catalogue[name] for name in _baseNames(model.training) if name in catalogue]
    entry = own or (bases[0] if bases else None)
    if entry is None:
        return model
    if bases and not own:
        model.baseModel = entry.get("title") or entry["name"]
    else:
        model.input = model.input or entry.get("input", "")
        model.cpuSeconds = model.cpuSeconds or float(entry.get("cpu_seconds") or 0.0)
    ownCard = os.path.splitext(model.path)[0] + ".md"
    card = os.path.join(entry["folder"], entry["card"]) if entry.get("card") else ""
    model.card = ownCard if os.path.isfile(ownCard) else (card if card and os.path.isfile(card) else "")
    byName = entry.get("terminology", {})
    for c in model.classes:
        if not c.get("terminology") and str(c["name"]) in byName:
            c["terminology"] = byName[str(c["name"])]
    return model


def listModels(listFunction=None):
    """Every model the engine finds (shipped, then the user's), as :class:`ModelInfo`, in-process.

    ``listFunction`` stands in for the engine's ``list_models`` (tests); by default it is imported
    from the engine next to the module. Raises :class:`EngineMissingError` when there is none.
    """
    entries = (listFunction or engineListModels())()
    catalogue = {}
    shippedFolders = []
    for entry in entries:
        folder = os.path.dirname(str(entry.get("path", "")))
        if entry.get("source") == "shipped" and folder not in shippedFolders:
            shippedFolders.append(folder)
    for folder in shippedFolders:
        for name, entry in readCatalogue(folder).items():
            catalogue.setdefault(name, entry)
    return [_mergeCatalogue(ModelInfo.fromJson(entry), catalogue) for entry in entries]
