"""What the benchmarks measure: configurations, steps, sample counts, time caps.

Every configuration runs in its own fresh process. Within it a measurement
that would take longer than ``cap_s`` is not run; its time is extrapolated
along the line through the two largest measured points (costs grow linearly
in the steps K and the samples N) and marked as extrapolated.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

STEPS = (1, 2, 10, 1000)  # DDIM steps K
SAMPLES = (1, 10, 20, 100)  # samples N for the uncertainty


@dataclass
class Config:
    name: str
    model: dict  # {"shipped": name} or {"grid": [...]}
    train_batch: int = 2
    train_steps: int = 3  # timed optimizer steps after one warm-up step


@dataclass
class LargeInput:
    name: str
    model: dict
    shape: list[int]  # spatial shape of the input
    channels: int = 1
    samples: int = 10


@dataclass
class Plan:
    quick: bool
    cap_s: float  # longest single measurement before extrapolating
    repeats: int  # most repeats of a cheap measurement (median)
    configs: list[Config]
    large_inputs: list[LargeInput]
    # The machine's yardstick convolutions. Not too small: below about 32^3
    # PyTorch runs fp32 Conv3d without oneDNN, at a tenth of the speed.
    conv2d: dict = field(default_factory=dict)
    conv3d: dict = field(default_factory=dict)
    steps: tuple[int, ...] = STEPS
    samples: tuple[int, ...] = SAMPLES
    job_timeout_s: float = 900

    def to_dict(self) -> dict:
        return asdict(self)


def shipped_configs(batch: int) -> list[Config]:
    from ldseg.io.models import list_models

    return [
        Config(f"{m['name']} (shipped)", {"shipped": m["name"]}, train_batch=batch)
        for m in list_models()
        if m.get("source") == "shipped" and "error" not in m
    ]


def make_plan(quick: bool) -> Plan:
    if quick:  # about a minute on one thread: small grids, few repeats, tight caps
        return Plan(
            quick=True,
            cap_s=1.0,
            repeats=2,
            job_timeout_s=180,
            configs=shipped_configs(batch=1)
            + [
                Config("2D 64x64 (small)", {"grid": [64, 64]}, train_batch=2, train_steps=2),
                Config("3D 32x32x32 (small)", {"grid": [32, 32, 32]}, train_batch=1, train_steps=2),
            ],
            large_inputs=[
                LargeInput(
                    "2D 1000x1000 RGB input, 2D 64x64 model", {"grid": [64, 64]}, [1000, 1000], channels=3, samples=2
                )
            ],
            conv2d={"shape": [128, 128], "channels": 32},
            conv3d={"shape": [40, 40, 40], "channels": 32},
        )
    return Plan(
        quick=False,
        cap_s=40.0,
        repeats=5,
        job_timeout_s=1500,
        configs=shipped_configs(batch=4)
        + [
            Config("2D 256x256 (small)", {"grid": [256, 256]}, train_batch=4),
            Config("2D 512x512 (small)", {"grid": [512, 512]}, train_batch=2),
            Config("3D 64x64x64 (small)", {"grid": [64, 64, 64]}, train_batch=2),
            Config("3D 128x128x256 (small)", {"grid": [128, 128, 256]}, train_batch=1, train_steps=2),
        ],
        large_inputs=[
            LargeInput("3D 128x128x256 input, hippocampus model", {"shipped": "hippocampus"}, [128, 128, 256]),
            LargeInput("2D 4000x4000 RGB input, 2D 256x256 model", {"grid": [256, 256]}, [4000, 4000], channels=3),
        ],
        conv2d={"shape": [256, 256], "channels": 32},
        conv3d={"shape": [64, 64, 64], "channels": 32},
    )
