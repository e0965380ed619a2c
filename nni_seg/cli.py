"""``python -m nni_seg <command>``: a thin layer over the library.

Each command parses its flags into settings (:mod:`nni_seg.config.settings`), calls one library function and
prints the result. Errors are turned into one line and an exit code in one place
(:func:`nni_seg.errors.guarded`): 2 for bad input, 1 for work that could not finish, 130 when
interrupted; ``--debug`` (before or after the command) shows the traceback of an unexpected error.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .errors import UserError, guarded
from .space.arch import SPACE_KINDS, VOCABULARIES
from .config.settings import (DataSettings, Parser, RecipeSettings, RunSettings, SearchSettings, TrainSettings,
                       TuneSettings, add_flags, from_flags, given_flags, load_sections, read_yaml)


@dataclass(frozen=True)
class Command:
    help: str
    build: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def _out(text: str) -> None:
    print(text, flush=True)


# --------------------------------------------------------------------------- search
def _build_run(p):
    p.add_argument("config", nargs="?", default="config.yml", help="nnictl experiment config (default config.yml)")
    p.add_argument("--resume", metavar="EXP_ID", help="resume this stopped experiment instead of creating one "
                                                      "(finished trials are kept, not rerun; config is not read)")
    add_flags(p, RunSettings, "run")


def _run(args) -> int:
    from .workflow.run import run_experiment

    top, path = run_experiment(args.config, from_flags(RunSettings, args), resume_id=args.resume, log=_out)
    _present_top(top, path, print_json=True)
    return 0


def _present_top(top, path: Path, *, print_json: bool = False, draw: bool = True) -> None:
    """What ``run`` and ``export`` say of an export: disagreements and warnings on stderr, then the
    architecture, one line, the cross-check, the file and its drawing."""
    from .workflow.export import one_line

    bad = top.cross_check.mismatches
    if bad:
        print(f"warning: NNI's records disagree with {len(bad)} trial record(s) (exported from the trials' "
              f"own records; run `python -m nni_seg patch-nni`): {[dataclasses.asdict(m) for m in bad[:3]]}",
              file=sys.stderr)
    for w in top.warnings:
        print(f"warning: {w}", file=sys.stderr)
    if print_json:
        _out(json.dumps(top.arch, indent=2))
    _out(one_line(top))
    check = top.cross_check
    _out(check.note if check.note else
         f"cross-check with NNI's records: {check.trials_checked} trials, {len(check.mismatches)} mismatches")
    _out(f"written: {path}")
    if draw:
        from .space.draw import draw as draw_arch

        png = draw_arch(top.arch, path.with_suffix(".png"), f"top architecture of {top.experiment_id}", top.summary)
        _out(f"written: {png}")


def _build_search(p):
    p.add_argument("--config", help="YAML with data / train / search sections")
    add_flags(p, SearchSettings, "search")


def _search(args) -> int:
    import signal

    from .experiment.lifecycle import interrupt_on_signal
    from .workflow.search import SearchInterrupted, load_config, run_search

    data_cfg, train_cfg, cfg = load_config(args.config)
    cfg = from_flags(SearchSettings, args, cfg)
    signal.signal(signal.SIGTERM, interrupt_on_signal)  # kill/timeout: NNI stops the experiment, records stay
    try:
        top = run_search(data_cfg, train_cfg, cfg)
    except SearchInterrupted as e:
        print(f"search {e.args[0]} stopped before its budget; finished trials are kept: "
              f"python -m nni_seg export {e.args[0]} --exp-dir {cfg.working_dir} (NNI 3.0 cannot resume "
              f"NAS experiments; use `python -m nni_seg run` for searches that must resume)", file=sys.stderr)
        return 130
    _out(json.dumps(top.arch, indent=2))
    m = top.metrics
    score = f"dice={m['dice']:.4f}" if m else "not scored (one-shot; retrain it)"
    _out(f"{cfg.strategy}: top architecture of {top.experiment_id}: {score} | {top.summary}")
    return 0


def _build_export(p):
    p.add_argument("experiment_id", help="experiment id (or its folder)")
    p.add_argument("--out", help="output JSON (default: <experiment dir>/top_arch.json)")
    p.add_argument("--exp-dir", action="append", help="experimentWorkingDirectory to search (repeatable)")
    p.add_argument("--metric", default="default", help="final-result key to maximise (default: default = Dice)")
    p.add_argument("--print-json", action="store_true", help="also print the exported architecture JSON")
    p.add_argument("--trust-db", action="store_true",
                   help="take a trial whose record is unreadable from NNI's database when it is the best there")
    p.add_argument("--force", action="store_true", help="replace an existing --out file")
    p.add_argument("--no-draw", action="store_true", help="do not draw the architecture next to the export")
    p.add_argument("--confirm", type=int, default=0, metavar="K",
                   help="train the top K trials again at the search's own settings (other seeds; run from the "
                        "folder the trials ran in) and export the best mean: a choice less driven by the short "
                        "trials' noise, for K x --extra-trainings trainings (default 0: off)")
    # --repeats: its old name, kept for scripts; the recipe's --repeats counts all trainings, this one the extra
    p.add_argument("--extra-trainings", "--repeats", dest="extra_trainings", type=int, default=1, metavar="R",
                   help="with --confirm: trainings of each beyond its search trial (default 1)")


def _export(args) -> int:
    from .workflow.export import export

    top, path = export(args.experiment_id, args.out, args.exp_dir, args.metric, args.trust_db, args.force,
                       confirm=args.confirm, extra_trainings=args.extra_trainings, log=_out)
    if top.confirmation is not None:
        for c in top.confirmation.candidates:
            _out(f"confirm: trial {c.trial_id}: mean {c.mean:.4f} of {', '.join(f'{v:.4f}' for v in c.scores)} "
                 f"({c.mmacs} MMACs)")
        _out(f"confirm: {top.note}")
    _present_top(top, path, print_json=args.print_json, draw=not args.no_draw)
    return 0


def _build_report(p):
    p.add_argument("experiment", help="experiment id (or its folder)")
    p.add_argument("--out", help="output folder (default: <experiment dir>/report, which a new report replaces)")
    p.add_argument("--exp-dir", action="append", help="experimentWorkingDirectory to search (repeatable)")
    p.add_argument("--force", action="store_true", help="replace report files already in --out")


def _report(args) -> int:
    from .experiment.records import experiment_dir
    from .files import output_folder
    from .workflow.report import REPORT_FILES, make_report

    d = experiment_dir(args.experiment, args.exp_dir)
    if args.out:  # the report's files are replaced one by one, each atomically
        output_folder(args.out, REPORT_FILES, force=args.force, what="a report", clear=False)
    res = make_report(d, Path(args.out) if args.out else None)
    _out(f"{res.trials} trials, {res.succeeded} succeeded, {len(res.pareto)} on the Pareto front")
    for e in res.unreadable:
        print(f"warning: left out: {e}", file=sys.stderr)
    for f in res.files:
        _out(f"written: {f}")
    return 0


def _build_recipe(p):
    add_flags(p, RecipeSettings, "recipe")
    add_flags(p, DataSettings, "retrain data")
    add_flags(p, TrainSettings, "retrain")


def _recipe(args) -> int:
    from .workflow.recipe import markdown, run_recipe

    rc = from_flags(RecipeSettings, args)
    res = run_recipe(rc, from_flags(DataSettings, args), from_flags(TrainSettings, args), log=_out)
    _out(markdown(res))
    _out(f"written: {Path(rc.out) / 'report.md'}")
    return 0


# --------------------------------------------------------------------------- the winner
def _build_retrain(p):
    p.add_argument("arch", help="exported top_arch.json, a plain architecture JSON, or seed / unet")
    p.add_argument("--out", default="checkpoints/retrain", help="checkpoint folder (default %(default)s)")
    p.add_argument("--resume", action="store_true", help="continue the checkpoint in --out (same architecture, data)")
    p.add_argument("--force", action="store_true", help="replace the checkpoint in --out")
    p.add_argument("--config", help="YAML with data / train sections (e.g. exported by tune); flags override it")
    add_flags(p, DataSettings, "data")
    add_flags(p, TrainSettings, "training")


def _retrain(args) -> int:
    from .deploy import retrain
    from .space.arch import load_arch_recipe

    base = load_sections(args.config, {"data": DataSettings, "train": TrainSettings})
    arch, searched = load_arch_recipe(args.arch)
    # a joint search's recipe is the base; what --config's train section gives, and the flags, override it
    in_config = (read_yaml(args.config).get("train") or {}) if args.config else {}
    recipe = {k: v for k, v in searched.items() if k not in in_config}
    train = from_flags(TrainSettings, args, dataclasses.replace(base["train"], **recipe))
    if recipe:
        _out("training recipe from the search: " + ", ".join(f"{k}={getattr(train, k)}" for k in recipe))
    meta = retrain(arch, from_flags(DataSettings, args, base["data"]), train, Path(args.out), resume=args.resume,
                   force=args.force, progress=True, log=_out).meta
    b = meta.best_scores
    _out(f"best val dice {b.dice:.4f} miou {b.miou:.4f} at epoch {meta.epoch} (scored at the training size "
         f"{meta.size[0]}x{meta.size[1]}; `evaluate` scores at the labels' resolution); checkpoint: {args.out}; "
         f"trained on {meta.compute}")
    return 0


def _build_evaluate(p):
    p.add_argument("ckpt", help="checkpoint folder written by retrain")
    p.add_argument("--split", default="val", choices=["train", "val", "test"],
                   help="val (default), train, or test where the dataset has labelled test images (CamVid)")
    p.add_argument("--native", action=argparse.BooleanOptionalAction, default=True,
                   help="score at the labels' stored resolution, as papers do (default); --no-native: at the "
                        "network's input size")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", help="also write the scores as JSON")
    p.add_argument("--force", action="store_true", help="replace an existing --json file")
    add_flags(p, DataSettings, "data (default: what the checkpoint was trained on)")


def _evaluate(args) -> int:
    from .config._typed import to_json
    from .deploy import evaluate, table
    from .files import atomic_write_json, check_output

    if args.json:
        check_output(args.json, force=args.force, what="--json")
    given = given_flags(DataSettings, args)
    rep = evaluate(args.ckpt, given, args.split, args.device, native=args.native, progress=True)
    _out(table(rep))
    if args.json:
        atomic_write_json(args.json, to_json(rep))
    return 0


def _build_predict(p):
    p.add_argument("ckpt")
    p.add_argument("images", nargs="+")
    p.add_argument("--out", default="predictions")
    p.add_argument("--masks", help="folder of ground-truth masks named like the images: also writes "
                                   "<name>_compare.png (image | truth | prediction)")
    p.add_argument("--force", action="store_true", help="replace existing predictions in --out")


def _predict(args) -> int:
    from .deploy import predict

    written = predict(args.ckpt, args.images, Path(args.out), args.masks, args.force)
    _out(f"written {len(written)} files to {args.out}")
    return 0


def _build_onnx(p):
    p.add_argument("ckpt", help="checkpoint folder written by retrain")
    p.add_argument("out", help="ONNX file to write")
    p.add_argument("--opset", type=int, default=17, choices=range(13, 21), metavar="13..20")
    p.add_argument("--atol", type=float, default=1e-3, help="max abs logit difference allowed (default %(default)s)")
    p.add_argument("--force", action="store_true", help="replace an existing ONNX file")


def _onnx(args) -> int:
    from .deploy import export_onnx

    if not args.atol > 0:
        raise UserError(f"--atol: must be > 0, got {args.atol}")
    res = export_onnx(args.ckpt, Path(args.out), args.opset, args.atol, args.force)
    _out(f"written: {res.path} ({res.bytes} bytes, opset {res.opset}); parity on {res.input_shape}: "
         f"max abs diff {res.max_abs_diff:.2e}, argmax agreement {res.argmax_agreement:.4f}")
    return 0


def _build_draw(p):
    p.add_argument("arch", help="top_arch.json, a plain architecture JSON, or seed / unet")
    p.add_argument("--out", help="PNG to write (default: next to the JSON, or <name>.png)")
    p.add_argument("--force", action="store_true", help="replace an existing PNG")


def _draw(args) -> int:
    from .space.arch import arch_summary
    from .space.draw import draw
    from .files import check_output
    from .space.arch import load_arch

    arch = load_arch(args.arch)
    out = Path(args.out) if args.out else (Path(args.arch).with_suffix(".png") if args.arch.endswith(".json")
                                           else Path(f"{args.arch}.png"))
    check_output(out, force=args.force, what="drawing")
    _out(f"written: {draw(arch, out, Path(args.arch).name, arch_summary(arch))}")
    return 0


def _build_tune(p):
    p.add_argument("arch", help="top_arch.json, an architecture JSON, seed / unet, or a checkpoint folder")
    p.add_argument("--config", help="tune YAML: tune / data / train sections and an optional space (NNI form)")
    add_flags(p, TuneSettings, "tune")
    add_flags(p, DataSettings, "data")
    add_flags(p, TrainSettings, "training (the base; tuned settings override it)")


def _tune(args) -> int:
    from .workflow.tune import load_tune_config, run_tune

    tune, _, train, _ = load_tune_config(args.config)
    res = run_tune(args.arch, args.config, tune=from_flags(TuneSettings, args, tune),
                   train=from_flags(TrainSettings, args, train), log=_out, data_flags=given_flags(DataSettings, args))
    _out(f"written: {res.config} (python -m nni_seg retrain ARCH --config {res.config})")
    return 0


# --------------------------------------------------------------------------- tools
def _build_pack(p):
    p.add_argument("--out", required=True, help=".npz to write")
    p.add_argument("--image-format", default="jpeg", choices=["jpeg", "png"])
    p.add_argument("--quality", type=int, default=90, choices=range(1, 101), metavar="1..100",
                   help="JPEG quality (default %(default)s)")
    p.add_argument("--force", action="store_true", help="replace an existing --out file")
    add_flags(p, DataSettings, "data")


def _pack(args) -> int:
    from .data import load_dataset, pack_dataset
    from .files import check_output

    from .progress import Progress

    if args.holdout:
        raise UserError("pack-data packs the dataset's own splits; give --holdout to the trials that read it")
    out = check_output(args.out, force=args.force, what="--out")
    with Progress(0, "pack-data: reading", "img") as bar:  # the total is not known before the folders are listed
        data = load_dataset(from_flags(DataSettings, args), test=None, progress=bar.update)
    path = pack_dataset(data, out, args.image_format, args.quality)
    test = f" + {len(data.test_images)} test" if data.test_images is not None else ""
    _out(f"written: {path} ({path.stat().st_size / 1e6:.1f} MB; {len(data.train_images)} train + "
         f"{len(data.val_images)} val{test} at {data.size[0]}x{data.size[1]}, images {args.image_format})")
    return 0


def _build_space(p):
    p.add_argument("--kind", choices=list(SPACE_KINDS), default="choice",
                   help="layer_choice: the variant RegularizedEvolutionTuner needs")
    p.add_argument("--vocabulary", choices=list(VOCABULARIES), default="full",
                   help="single_op: the first model space (one op per cell, max-pool down, no context block); "
                        "joint: the model space and the training recipe; unet_joint: the joint space with the "
                        "U-Net's levels and skips fixed")
    p.add_argument("--out", help="file to write (default: print)")
    p.add_argument("--force", action="store_true", help="replace an --out file whose content differs")


def _space(args) -> int:
    from .space.arch import dumps_space
    from .files import atomic_write_text, check_output

    text = dumps_space(args.kind, args.vocabulary)
    if not args.out:
        print(text, end="")
        return 0
    out = Path(args.out)
    if out.is_file() and out.read_text() == text:
        _out(f"unchanged: {out}")
        return 0
    check_output(out, force=args.force, what="--out")
    _out(f"written: {atomic_write_text(out, text)}")
    return 0


def _build_patch(p):
    g = p.add_mutually_exclusive_group()
    g.add_argument("--check", action="store_true", help="only report; exit 1 if NNI is not patched")
    g.add_argument("--revert", action="store_true", help="restore NNI's files as shipped")


def _patch(args) -> int:
    from .experiment import patch as nni_patch

    states = nni_patch.revert() if args.revert else nni_patch.file_states() if args.check else nni_patch.apply()
    for name, s in nni_patch.patch_states().items():
        _out(f"{name}: {s}")
    for f, s in states.items():
        _out(f"{f}: {s}")
    return 1 if args.check and nni_patch.state() != "patched" else 0


def _trial(argv: list[str]) -> int:
    from .experiment.trial import main

    return main(argv)


COMMANDS: dict[str, Command] = {
    "run": Command("run an nnictl experiment from a config, follow it, export the top architecture", _build_run, _run),
    "search": Command("NNI NAS strategies (enas, evolution, tpe, random) via NasExperiment", _build_search, _search),
    "export": Command("export the top architecture of an experiment (running or stopped)", _build_export, _export),
    "report": Command("PNGs (Dice vs trial, Dice vs MMACs + Pareto front, the winner) and CSV/MD tables",
                      _build_report, _report),
    "recipe": Command("search, then retrain the winner and reference nets alike, evaluate, report", _build_recipe,
                      _recipe),
    "retrain": Command("train an architecture fully, with checkpoints", _build_retrain, _retrain),
    "evaluate": Command("per-class Dice/IoU of a checkpoint (native label resolution)", _build_evaluate, _evaluate),
    "predict": Command("colour masks, overlays (and comparisons with --masks) for images", _build_predict, _predict),
    "onnx": Command("export a checkpoint to ONNX with a parity check", _build_onnx, _onnx),
    "draw": Command("draw an architecture as a PNG", _build_draw, _draw),
    "tune": Command("tune the winner's training with an NNI HPO experiment (exports a training config)",
                    _build_tune, _tune),
    "pack-data": Command("write a dataset as one compact .npz (quick to load and ship)", _build_pack, _pack),
    "space": Command("write the search-space JSON generated from the model space", _build_space, _space),
    "patch-nni": Command("apply (or --check, --revert) our fixes to the installed NNI 3.0", _build_patch, _patch),
}
EXTRA = {"trial": "train one architecture (what NNI runs; standalone with --arch)"}


def _usage() -> str:
    names = {**{k: c.help for k, c in COMMANDS.items()}, **EXTRA}
    width = max(map(len, names))
    return "usage: python -m nni_seg [--debug] <command> [args]\n\ncommands:\n" + \
        "\n".join(f"  {name:<{width}}  {help_}" for name, help_ in names.items())


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name == "trial":
        return _trial(rest)
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}; valid: {', '.join([*COMMANDS, *EXTRA])}", file=sys.stderr)
        return 2
    cmd = COMMANDS[name]

    def run() -> int:
        p = Parser(prog=f"python -m nni_seg {name}", description=cmd.help)
        cmd.build(p)
        return cmd.run(p.parse_args(rest))

    return guarded(run, debug)
