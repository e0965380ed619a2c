"""``python -m nni_seg <command>``: the user-facing commands."""
from __future__ import annotations

import sys


def _space(argv: list[str]) -> int:
    import argparse
    from pathlib import Path

    from .space import dumps_space

    ap = argparse.ArgumentParser(prog="python -m nni_seg space",
                                 description="Write the nnictl search-space JSON generated from the model space.")
    ap.add_argument("--kind", choices=["choice", "layer_choice"], default="choice",
                    help="layer_choice: the variant RegularizedEvolutionTuner needs")
    ap.add_argument("--out", help="file to write (default: print)")
    args = ap.parse_args(argv)
    text = dumps_space(args.kind)
    if args.out:
        Path(args.out).write_text(text)
        print(f"written: {args.out}")
    else:
        print(text, end="")
    return 0


def _lazy(module: str, func: str = "main"):
    def run(argv: list[str]) -> int:
        import importlib

        return getattr(importlib.import_module(f"nni_seg.{module}"), func)(argv)
    return run


COMMANDS = {
    "run": (_lazy("launch"), "run an nnictl experiment from a config, follow it, export the top architecture"),
    "search": (_lazy("search"), "NNI NAS strategies (enas, evolution, tpe, random) via NasExperiment"),
    "export": (_lazy("export"), "export the top architecture of an experiment (running or stopped)"),
    "report": (_lazy("report"), "PNGs (Dice vs trial, Dice vs FLOPs + Pareto front) and CSV/MD tables"),
    "recipe": (_lazy("recipe"), "search, then retrain the winner and the seed's net, evaluate, report"),
    "retrain": (_lazy("deploy", "main_retrain"), "train an exported architecture fully, with checkpoints"),
    "evaluate": (_lazy("deploy", "main_evaluate"), "per-class Dice/IoU table of a checkpoint"),
    "predict": (_lazy("deploy", "main_predict"), "colour masks and overlays for images"),
    "onnx": (_lazy("deploy", "main_onnx"), "export a checkpoint to ONNX with a parity check"),
    "pack-data": (_lazy("data", "main_pack"), "write a dataset as one compact .npz (quick to load and ship)"),
    "space": (_space, "write the search-space JSON generated from the model space"),
    "trial": (_lazy("trial"), "train one architecture (what NNI runs; standalone with --arch)"),
    "bench-strategies": (_lazy("strategies"), "compare strategies at equal budget on a proxy objective"),
    "patch-nni": (_lazy("nni_patch"), "apply our fixes to the installed NNI 3.0 (idempotent)"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m nni_seg <command> [args]\n\ncommands:")
        width = max(map(len, COMMANDS))
        for name, (_, help_) in COMMANDS.items():
            print(f"  {name:<{width}}  {help_}")
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}; valid: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    return COMMANDS[name][0](rest)
