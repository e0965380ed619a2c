"""Single CPU ops on each path, side by side in one run: the depthwise convs and the BatchNorm that
docs/performance.md names as the bf16 / channels-last pathologies. Forward + backward, min of 3 after a
warm-up, modes interleaved; ``blocks.DepthwiseConv2d`` (what the networks use) beside ``nn.Conv2d``.

    python -m bench.cpu_ops [--threads 1] [--out docs/cpu_ops.json]
"""
from __future__ import annotations

import argparse
import json
import time

import torch
from torch import nn

from nni_seg.space.blocks import DepthwiseConv2d

MODES = {"fp32 NCHW": (False, False), "fp32 channels-last": (False, True), "bf16 NCHW": (True, False),
         "bf16 channels-last": (True, True)}


def ops() -> dict[str, tuple[nn.Module, tuple[int, ...]]]:
    return {
        "depthwise 3x3 (nn.Conv2d), 64 ch, 4x96x128": (nn.Conv2d(64, 64, 3, padding=1, groups=64, bias=False),
                                                      (4, 64, 96, 128)),
        "depthwise 5x5 (nn.Conv2d), 64 ch, 4x96x128": (nn.Conv2d(64, 64, 5, padding=2, groups=64, bias=False),
                                                      (4, 64, 96, 128)),
        "depthwise 5x5 (blocks.DepthwiseConv2d)": (DepthwiseConv2d(64, 64, 5, padding=2, groups=64, bias=False),
                                                   (4, 64, 96, 128)),
        "BatchNorm2d (train), 32 ch, 8x96x128": (nn.BatchNorm2d(32), (8, 32, 96, 128)),
    }


def time_op(module: nn.Module, shape: tuple[int, ...], amp: bool, cl: bool, rounds: int) -> list[float]:
    m = module.to(memory_format=torch.channels_last) if cl else module
    x = torch.randn(shape)
    x = (x.contiguous(memory_format=torch.channels_last) if cl else x).requires_grad_()
    out = []
    for _ in range(rounds):
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            y = m(x)
        y.float().sum().backward()
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=4, help="per mode, the first a warm-up")
    ap.add_argument("--out")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    results = {}
    for name, (module, shape) in ops().items():
        times: dict[str, list[float]] = {m: [] for m in MODES}
        for _ in range(args.rounds):  # interleaved: a load that comes and goes hits every mode alike
            for mode, (amp, cl) in MODES.items():
                times[mode] += time_op(module, shape, amp, cl, 1)
        results[name] = {m: round(1e3 * min(t[1:] or t), 1) for m, t in times.items()}
    print(f"forward + backward, ms (min of {args.rounds - 1} after a warm-up), {args.threads} thread(s)")
    print("| op | " + " | ".join(MODES) + " |\n|---|" + "---|" * len(MODES))
    for name, r in results.items():
        print(f"| {name} | " + " | ".join(str(r[m]) for m in MODES) + " |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"threads": args.threads, "ms": results}, f, indent=2)


if __name__ == "__main__":
    main()
