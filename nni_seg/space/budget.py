"""The cost budget, one check for the tuner (before proposing) and the trial (before training).

A budget is ``max_mmacs`` (multiply-accumulates per image, millions, at the trial's size), ``max_mmacs_of`` a
reference network (no more than it at that size) and ``max_params``. A tuner's budget may also have a floor,
``min_share`` of its MMACs limit: a search preference, not a trial's constraint (the trial checks only the
ceilings), for searches whose short trials would otherwise favour the smallest networks. MACs are counted
on PyTorch's meta device (shapes only, milliseconds) and rounded to 3 places on both sides, so the U-Net is
within its own budget whoever asks.
"""
from __future__ import annotations

from typing import Any

from .arch import NAMED_ARCHS, Arch

PLACES = 3


def reference_mmacs(name: str, num_classes: int, in_channels: int, size: tuple[int, int]) -> float:
    """MMACs per image of reference network ``name`` (``seed``, ``unet``) at ``size``."""
    from .cost import arch_mmacs

    return arch_mmacs(NAMED_ARCHS[name](), num_classes, in_channels, tuple(size))


def limit_mmacs(max_mmacs: float | None, max_mmacs_of: str | None, num_classes: int, in_channels: int,
                size: tuple[int, int]) -> float | None:
    """The MMACs limit at ``size``: the smaller of ``max_mmacs`` and the reference's (None: no limit)."""
    limits = [max_mmacs] if max_mmacs is not None else []
    if max_mmacs_of is not None:
        limits.append(reference_mmacs(max_mmacs_of, num_classes, in_channels, size))
    return round(min(limits), PLACES) if limits else None


def over_budget(mmacs: float, params: int, budget: Any, num_classes: int, in_channels: int,
                size: tuple[int, int]) -> list[str]:
    """Why a network of ``mmacs`` and ``params`` is over ``budget`` (a ``BudgetSettings``; empty: within it)."""
    over = []
    limit = limit_mmacs(budget.max_mmacs, budget.max_mmacs_of, num_classes, in_channels, size)
    if limit is not None and round(mmacs, PLACES) > limit:
        of = f" ({budget.max_mmacs_of}'s)" if budget.max_mmacs_of and limit != budget.max_mmacs else ""
        over.append(f"{mmacs:.1f} MMACs > {limit:.1f}{of}")
    if budget.max_params and params > budget.max_params:
        over.append(f"{params} params > {budget.max_params}")
    return over


class Budget:
    """A tuner's view of the trials' budget (class arguments ``budget: {size, max_mmacs, max_mmacs_of, ...}``):
    ``allows(arch)`` says what the trial will say, before the architecture is proposed."""

    def __init__(self, size: list, max_mmacs: float | None = None, max_mmacs_of: str | None = None,
                 num_classes: int = 11, in_channels: int = 3, min_share: float | None = None):
        if len(size) != 2 or not all(isinstance(v, int) and v >= 8 for v in size):
            raise ValueError(f"budget.size: two integers H W >= 8, got {size!r}")
        if max_mmacs is None and max_mmacs_of is None:
            raise ValueError("budget: give max_mmacs and/or max_mmacs_of")
        if max_mmacs is not None and (isinstance(max_mmacs, bool) or not isinstance(max_mmacs, (int, float))
                                      or not max_mmacs > 0):
            raise ValueError(f"budget.max_mmacs: a number > 0, got {max_mmacs!r}")
        for name, v in (("num_classes", num_classes), ("in_channels", in_channels)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"budget.{name}: an integer >= 1, got {v!r}")
        if max_mmacs_of is not None and max_mmacs_of not in NAMED_ARCHS:
            raise ValueError(f"budget.max_mmacs_of: unknown network {max_mmacs_of!r}; valid: {', '.join(NAMED_ARCHS)}")
        if min_share is not None and (isinstance(min_share, bool) or not isinstance(min_share, (int, float))
                                      or not 0 < min_share <= 1):
            raise ValueError(f"budget.min_share: a share of the MMACs limit in (0, 1], got {min_share!r}")
        self.size, self.num_classes, self.in_channels = tuple(size), num_classes, in_channels
        self.limit = limit_mmacs(max_mmacs, max_mmacs_of, num_classes, in_channels, self.size)
        self.floor = None if min_share is None else round(min_share * self.limit, PLACES)

    def mmacs(self, arch: Arch) -> float:
        from .cost import arch_mmacs

        return arch_mmacs(arch, self.num_classes, self.in_channels, self.size)

    def allows(self, arch: Arch) -> bool:
        mmacs = round(self.mmacs(arch), PLACES)
        return mmacs <= self.limit and (self.floor is None or mmacs >= self.floor)
