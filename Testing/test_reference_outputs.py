"""The shipped models give bit-identical segmentations across refactorings.

Testing/reference/shipped_outputs.json holds SHA-256 digests of the labels,
mean probabilities and SD maps of a few held-out cases, recorded by
scripts/make_reference_outputs.py from the engine before a change. A
refactoring must reproduce every bit; a change meant to alter results (a new
model, a new default) records them anew and says so in its commit. fp32
kernels differ in the last bits between CPU kinds (AVX2, AVX-512 BF16, AMX),
so a CPU kind with a set of its own (``alternates``, by
``ldseg.device.cpu_kind``) is held to that set.
A record made with a model file that has since been replaced (its
``model_sha256`` differs) is skipped with the command that records it anew:
a retrained model can only be recorded on the CPU kinds at hand.
"""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ldseg import device
from ldseg.device import cpu_has_fast_bf16, cpu_kind
from ldseg.inference.segmenter import Segmenter
from ldseg.io.models import resolve_model

REFERENCE = Path(__file__).parent / "reference" / "shipped_outputs.json"
RECORDS = json.loads(REFERENCE.read_text())
#: This CPU kind's own set where one was recorded, else the main one.
THIS_CPU = RECORDS.get("alternates", {}).get(cpu_kind(), RECORDS["records"])


def _digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


@pytest.mark.parametrize("record", THIS_CPU, ids=lambda r: f"{r['model']}-{Path(r['case']).name}-{r['precision']}")
def test_shipped_model_output_is_bit_identical_to_the_reference(record, shared_data):
    made_with = record.get("model_sha256")
    if made_with is not None and made_with != hashlib.sha256(resolve_model(record["model"]).read_bytes()).hexdigest():
        pytest.skip(
            f"recorded with an earlier {record['model']} model file; on this CPU kind ({cpu_kind()}) record it "
            "anew: python scripts/make_reference_outputs.py --add-cpu"
        )
    if record["ran_precision"] == "bf16" and not cpu_has_fast_bf16():
        pytest.skip("the bf16 reference was recorded on a CPU with fast bf16 (AMX / AVX-512 BF16)")
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # as recorded: reduction order can depend on the thread count
    try:
        seg = Segmenter(record["model"], device="cpu", precision=record["precision"])
        result = seg.segment(shared_data / record["case"], **RECORDS["settings"])
    finally:
        torch.set_num_threads(threads)
    assert result.precision == record["ran_precision"]
    assert int((result.classes > 0).sum()) == record["foreground_voxels"]
    assert _digest(result.labels) == record["labels"]
    assert _digest(result.probabilities) == record["probabilities"]
    assert _digest(result.sd) == record["sd"]


@pytest.mark.parametrize(
    "flags, suffix, fast_bf16",
    [({"avx2"}, "", False), ({"avx512f", "avx512_bf16"}, "+bf16", True), ({"avx512_bf16", "amx_bf16"}, "+amx", True)],
)
def test_cpu_kind_tells_amx_from_avx512_bf16(monkeypatch, flags, suffix, fast_bf16):
    # An Intel AMX and an AMD AVX-512 BF16 machine give other bits: each needs a reference set of its own.
    monkeypatch.setattr(device, "_cpu_flags", lambda: frozenset(flags))
    assert cpu_kind() == torch.backends.cpu.get_cpu_capability() + suffix
    assert cpu_has_fast_bf16() is fast_bf16
