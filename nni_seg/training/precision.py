"""Which arithmetic a training or an evaluation runs: bf16 autocast and channels-last where the hardware
computes bf16 natively (CUDA; CPUs with AMX-BF16 or AVX512-BF16), fp32 NCHW elsewhere.

One owner for the choice, so the trainer, the per-epoch evaluation, ``evaluate``, ``predict`` and the
trial's latency check all run the same path, and records say which one ran.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os

import torch
from torch import nn

# oneDNN's ISA cap (ONEDNN_MAX_CPU_ISA) values that still include bf16 arithmetic. A lower cap makes
# oneDNN emulate bf16, which is slower than fp32, so we treat the CPU as one without native bf16.
_BF16_ISAS = {"ALL", "DEFAULT", "AVX512_CORE_BF16", "AVX512_CORE_AMX", "AVX512_CORE_AMX_FP16",
              "AVX10_1_512", "AVX10_1_512_AMX", "AVX10_1_512_AMX_FP16", "AVX10_2_512", "AVX10_2_512_AMX_2"}


def cpu_bf16_unit() -> str | None:
    """The CPU's native bf16 unit, ``"AMX-BF16"`` or ``"AVX512-BF16"``, or None (no native bf16, or
    oneDNN capped below it by ``ONEDNN_MAX_CPU_ISA``)."""
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "").strip().upper()
    if cap and cap not in _BF16_ISAS:
        return None
    caps = getattr(torch.cpu, "get_capabilities", dict)()
    if caps.get("amx_bf16") or (not caps and getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()):
        return "AMX-BF16"
    if caps.get("avx512_bf16") or getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)():
        return "AVX512-BF16"
    return None


@dataclasses.dataclass(frozen=True)
class ComputePath:
    """bf16 autocast (weights, optimiser state, loss and metrics stay fp32) and/or channels-last on ``device``."""
    device: torch.device
    amp: bool
    channels_last: bool
    note: str = ""  # why: the bf16 unit, or why the fast path is off

    @property
    def key(self) -> str:
        """What decides the numbers, without the notes: ``cpu:bf16:channels-last``, ``cuda:fp32:nchw``, ..."""
        return f"{self.device.type}:{'bf16' if self.amp else 'fp32'}:{'channels-last' if self.channels_last else 'nchw'}"

    def __str__(self) -> str:
        kind = "bf16 autocast" if self.amp else "fp32"
        layout = "channels-last" if self.channels_last else "NCHW"
        return f"{self.device.type}: {kind}, {layout}" + (f" ({self.note})" if self.note else "")

    def autocast(self) -> contextlib.AbstractContextManager:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp)

    def model(self, model: nn.Module) -> nn.Module:
        return model.to(memory_format=torch.channels_last) if self.channels_last else model

    def input(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


def key_of(compute: str | None, device: str = "cpu") -> str:
    """:attr:`ComputePath.key` of a record's ``compute`` string; a record written before the CPU fast path
    (no ``compute``) ran fp32 NCHW on the CPU."""
    if not compute:
        return f"{device}:fp32:nchw"
    kind, _, rest = compute.partition(": ")
    return f"{kind}:{'bf16' if rest.startswith('bf16') else 'fp32'}:{'channels-last' if 'channels-last' in rest else 'nchw'}"


def compute_path(device: torch.device, amp: bool = True, channels_last: bool = True) -> ComputePath:
    """The path ``device`` runs given the ``amp`` / ``channels_last`` settings.

    On a CPU without native bf16 both stay off whatever is asked: emulated bf16 is slower than fp32, and
    channels-last in fp32 is slower for some networks (docs/performance.md), so such a CPU runs exactly
    the fp32 NCHW path it always ran.
    """
    if device.type == "cuda":
        return ComputePath(device, amp, channels_last)
    if device.type != "cpu":
        return ComputePath(device, False, False, f"no bf16 path on {device.type}")
    unit = cpu_bf16_unit()
    if unit is None:
        return ComputePath(device, False, False, "this CPU has no native bf16")
    off = [flag for flag, on in (("--no-amp", amp), ("--no-channels-last", channels_last)) if not on]
    return ComputePath(device, amp, channels_last, unit if not off else f"{unit}; {' '.join(off)}")
