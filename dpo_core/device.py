"""Device detection: CUDA (name, memory), Apple MPS or CPU, and the precision that suits it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

Precision = Literal["bf16", "fp16", "fp32"]


@dataclass(frozen=True)
class DeviceInfo:
    kind: Literal["cuda", "mps", "cpu"]
    name: str
    memory_gb: float
    count: int
    precision: Precision

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def label(self) -> str:
        if self.kind == "cpu":
            return f"CPU ({self.name}, {self.memory_gb:.0f} GB RAM) · {self.precision}"
        n = f"{self.count}x " if self.count > 1 else ""
        return f"{n}{self.name} ({self.memory_gb:.0f} GB) · {self.precision}"


def detect_device() -> DeviceInfo:
    """The best accelerator torch can use here, and the training precision for it."""
    import torch

    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        precision: Precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return DeviceInfo("cuda", props.name, props.total_memory / 2**30,
                          torch.cuda.device_count(), precision)
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return DeviceInfo("mps", "Apple MPS", _ram_gb(), 1, "fp32")
    return DeviceInfo("cpu", f"{torch.get_num_threads()} threads", _ram_gb(), 1, "fp32")


def _ram_gb() -> float:
    try:
        import os

        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return 0.0
