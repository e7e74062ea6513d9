"""Standard terminology of segments (DICOM / SNOMED CT), as Slicer stores it on a segment.

A model declares, per class, code triplets ``[coding scheme, code value, code meaning]`` for the
category and type (optionally a type modifier, an anatomic region and its modifier): the model
config's ``class_terminology``, or the shipped models' catalogue. Slicer keeps a segment's
terminology as one string in the segment tag ``TerminologyEntry``:
``context~category~type~typeModifier~anatomicContext~region~regionModifier``, each code written
``scheme^value^meaning``. With it, Segment Editor shows the standard names, and DICOM SEG export
writes the codes, so results are interoperable with other tools.
"""

#: Context names of the DICOM master lists that Slicer ships (the codes used here come from them).
CATEGORY_TYPE_CONTEXT = "Segmentation category and type - DICOM master list"
ANATOMIC_CONTEXT = "Anatomic codes - DICOM master list"
TAG_NAME = "TerminologyEntry"  # vtkSegment.GetTerminologyEntryTagName()
KEYS = ("category", "type", "type_modifier", "region", "region_modifier")


def _code(triplet):
    if not triplet:
        return "^^"
    scheme, value, meaning = (str(part).replace("~", " ").replace("^", " ") for part in triplet)
    return f"{scheme}^{value}^{meaning}"


def checkEntry(entry):
    """Raise ValueError unless ``entry`` is a terminology dict with category and type triplets."""
    if not isinstance(entry, dict):
        raise ValueError("a terminology entry must be an object")
    unknown = sorted(set(entry) - set(KEYS))
    if unknown:
        raise ValueError(f"unknown terminology keys {unknown}")
    for key in ("category", "type"):
        if not entry.get(key):
            raise ValueError(f"a terminology entry needs {key!r}")
    for key, code in entry.items():
        if not (isinstance(code, (list, tuple)) and len(code) == 3 and all(str(p).strip() for p in code)):
            raise ValueError(f"terminology {key} must be [coding scheme, code value, code meaning]")


def serialize(entry):
    """Slicer's terminology string of one entry (``TerminologyEntry`` tag value)."""
    checkEntry(entry)
    region = entry.get("region")
    return "~".join(
        [
            CATEGORY_TYPE_CONTEXT,
            _code(entry["category"]),
            _code(entry["type"]),
            _code(entry.get("type_modifier")),
            ANATOMIC_CONTEXT if region else "",
            _code(region),
            _code(entry.get("region_modifier")),
        ]
    )


def applyToSegment(segment, entry):
    """Set the segment's standard terminology (no-op for None)."""
    if entry:
        segment.SetTag(TAG_NAME, serialize(entry))


def describe(entry):
    """Short text for a tooltip or the model summary: "Hippocampus (Anterior)"."""
    if not entry:
        return ""
    text = str(entry["type"][2])
    if entry.get("type_modifier"):
        text += f" ({entry['type_modifier'][2]})"
    if entry.get("region"):
        text += f" in {entry['region'][2]}"
    return text
