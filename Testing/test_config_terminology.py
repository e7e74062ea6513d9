"""class_terminology in the model config: optional, one entry per class, JSON round trip, validation."""

import json

import pytest

from ldseg.config import ModelConfig, Preprocessing

HIPPOCAMPUS = {"category": ["SCT", "123037004", "Anatomical Structure"], "type": ["SCT", "5366008", "Hippocampus"]}


def config(terminology=()):
    return ModelConfig(
        preprocessing=Preprocessing(dims=2, channels=1, grid=(32, 32), label_values=(0, 1, 2)),
        class_names=("background", "anterior", "posterior"),
        class_terminology=terminology,
    )


def test_round_trip_and_summary():
    anterior = {**HIPPOCAMPUS, "type_modifier": ["SCT", "255549009", "Anterior"]}
    original = config((None, anterior, HIPPOCAMPUS))
    original.validate()
    restored = ModelConfig.from_dict(json.loads(json.dumps(original.to_dict())))
    assert restored.class_terminology == (None, anterior, HIPPOCAMPUS)
    classes = restored.summary()["classes"]
    assert "terminology" not in classes[0] and classes[1]["terminology"] == anterior


def test_optional_and_old_files_read():
    d = config().to_dict()
    assert d["class_terminology"] == []
    del d["class_terminology"]  # a file written before the field existed
    assert ModelConfig.from_dict(d).class_terminology == ()
    assert all("terminology" not in c for c in config().summary()["classes"])


@pytest.mark.parametrize(
    "terminology,message",
    [
        ((None, HIPPOCAMPUS), "one entry per class"),
        ((None, HIPPOCAMPUS, {"type": HIPPOCAMPUS["type"]}), "needs 'category'"),
        ((None, HIPPOCAMPUS, {**HIPPOCAMPUS, "colour": ["a", "b", "c"]}), "unknown keys"),
        ((None, HIPPOCAMPUS, {**HIPPOCAMPUS, "type": ["SCT", "5366008"]}), "coding scheme, code value, code meaning"),
        ((None, HIPPOCAMPUS, "Hippocampus"), "must be an object or null"),
    ],
)
def test_invalid_terminology_is_refused(terminology, message):
    with pytest.raises(ValueError, match=message):
        config(terminology).validate()
    d = config().to_dict()
    d["class_terminology"] = list(terminology)
    with pytest.raises(ValueError, match=message):
        ModelConfig.from_dict(d)
