"""Search, then retrain and evaluate: the whole path from data to a report, as one library call.

:func:`run_recipe` runs

0. optionally (``tune_first``), a tune of the U-Net's training, whose settings every trial of the search
   then trains with (the recipe first, then the architecture: the search's networks compared under one
   good recipe, the U-Net's tuned one, which ``unet+recipe`` retrains);
1. the nnictl search of ``search_config`` (its own proxy budget: reduced size and epochs, a cost
   budget), then exports the top architecture;
2. a report of the search (Dice vs trial, Dice vs MMACs with the Pareto front, the winner drawn);
3. optionally, a tune of the winner's training (``tune_config``: :mod:`nni_seg.workflow.tune`);
4. the winner's full retraining with the settings its search (and tune) chose, the flags filling the
   rest; each reference network (``baselines``: the seed's net, the textbook U-Net) with the flags, and
   again with the winner's settings where those differ (:func:`retrain_plan`); ``repeats`` times each
   with different seeds;
5. val evaluation of every training at the labels' native resolution, confusion matrices, drawings of
   the architectures and a few val predictions side by side;
6. ``report.md`` + ``results.json`` in ``out`` with the wall time of each phase.
"""
from __future__ import annotations

import dataclasses
import statistics
import time
from pathlib import Path
from typing import Callable

from ..config import schema
from ..space.arch import NAMED_ARCHS
from ..files import atomic_write_text, output_folder
from ..plots import save_png
from .report import make_report
from ..config.schema import NetworkResult, RecipeResult
from ..config.settings import DataSettings, RecipeSettings, RunSettings, TrainSettings, flag_name
from ..errors import ConfigError

RECIPE_SUFFIX = "+recipe"  # a baseline retrained with the searched net's settings, not the flags
# the training recipe (not the schedule's length, size or device, which are the search's own): what
# --tune-first hands every search trial
RECIPE_FIELDS = ("batch_size", "lr", "weight_decay", "loss", "class_weights", "augment", "scale_min", "scale_max")
OUTPUTS = ("results.json", "report.md", "top_arch.json", "search", "searched", "tune_first", "search_config.yml",
           *NAMED_ARCHS,
           *(name + RECIPE_SUFFIX for name in NAMED_ARCHS))


def confusion_png(confusion: list[list[float]], names: list[str], path: Path, title: str) -> Path:
    """Row-normalised confusion matrix (true class rows, predicted columns) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    cm = np.asarray(confusion, dtype=float)
    rows = cm.sum(1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    n = len(names)
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * n, 0.8 + 0.5 * n))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), names, rotation=60, ha="right")
    ax.set_yticks(range(n), names)
    for i in range(n):
        for j in range(n):
            if norm[i, j] >= 0.01:
                ax.text(j, i, f"{100 * norm[i, j]:.0f}", ha="center", va="center", fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black")
    ax.set(xlabel="predicted", ylabel="true", title=title)
    return save_png(fig, path)


def predictions_png(networks: dict, data, path: Path, count: int = 3) -> Path:
    """A grid: for ``count`` val images, the image, its ground truth and each network's prediction (at the
    labels' native resolution), side by side. ``networks``: name -> ``retrain``'s result."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch
    import torch.nn.functional as F

    from ..data import colourize
    from ..training.trainer import Normalizer

    images = data.val_images
    masks = data.native.get("val") or list(data.val_masks)
    picks = [round(i * (len(images) - 1) / max(1, count - 1)) for i in range(min(count, len(images)))]
    palette = data.colours()

    def colour(m):
        return colourize(m, palette)

    preds = {}
    for name, trained in networks.items():
        model, meta = trained.model.cpu().eval(), trained.meta
        norm = Normalizer(meta.mean, meta.std)
        with torch.no_grad():
            logits = model(norm(images[picks]))
        preds[name] = [F.interpolate(logits[k:k + 1], size=tuple(masks[i].shape), mode="bilinear",
                                     align_corners=False).argmax(1)[0].numpy() for k, i in enumerate(picks)]
    cols = ["image", "ground truth", *preds]
    fig, axes = plt.subplots(len(picks), len(cols), figsize=(2.6 * len(cols), 2.1 * len(picks)), squeeze=False)
    for r, i in enumerate(picks):
        h, w = masks[i].shape
        img = F.interpolate(images[i:i + 1].float(), size=(h, w), mode="bilinear", align_corners=False)[0]
        img = img.permute(1, 2, 0).round().clamp(0, 255).byte().numpy()
        panels = [img if img.shape[-1] == 3 else img[..., 0], colour(masks[i])] + [colour(preds[n][r]) for n in preds]
        for c, (ax, panel) in enumerate(zip(axes[r], panels)):
            ax.imshow(panel, cmap="gray" if panel.ndim == 2 else None)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(cols[c], fontsize=9)
    return save_png(fig, path)


def _device(name: str) -> str:
    import torch

    from ..training.trainer import resolve_device

    dev = resolve_device(name)
    return torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"


def retrain_plan(arch: dict, rc: RecipeSettings, train_cfg: TrainSettings,
                 searched_train: TrainSettings) -> list[tuple[str, dict, TrainSettings]]:
    """(name, architecture, settings) of every retraining: the searched net with its own settings, each
    baseline with the flags, and, where the searched settings differ from the flags, each baseline with those
    too. The last rows part the recipe's gain from the architecture's: on ISBI 2012 the U-Net with a joint
    search's recipe beat the searched net (docs/results.md), a finding the flags-only rows would hide."""
    plan = [("searched", arch, searched_train)]
    plan += [(name, NAMED_ARCHS[name](), train_cfg) for name in rc.baseline_names]
    if rc.baselines_searched_recipe and searched_train != train_cfg:
        plan += [(name + RECIPE_SUFFIX, NAMED_ARCHS[name](), searched_train) for name in rc.baseline_names]
    return plan


def trial_flags(train: TrainSettings) -> list[str]:
    """``train``'s recipe (:data:`RECIPE_FIELDS`) as a trial's flags."""
    out: list[str] = []
    for name in RECIPE_FIELDS:
        value = getattr(train, name)
        if isinstance(value, bool):
            out.append(flag_name(name) if value else "--no-" + name.replace("_", "-"))
        else:
            out += [flag_name(name), str(value)]
    return out


def check_tune_first(search_config: str) -> None:
    """--tune-first trains every search trial with the tuned settings: a joint space's recipe labels would
    replace them (one line, before anything runs)."""
    from ..space.arch import split_joint
    from ..experiment.lifecycle import search_space_of

    labels = sorted(split_joint(search_space_of(Path(search_config)))[1])
    if labels:
        raise ConfigError(f"{search_config}: --tune-first trains every trial with the tuned settings, but this "
                          f"search space has recipe labels ({', '.join(labels)}) that would replace them; use an "
                          f"architecture-only search (experiments/camvid/arch_ladder_cpu.yml)")


def _tune_data(config: str | None, data_cfg: DataSettings) -> DataSettings | None:
    """What a tune YAML trains on: the recipe's data unless the YAML's ``data:`` says (loaded: a bad one
    stops here)."""
    if not config:
        return None
    from ..data import load_dataset
    from .tune import load_tune_config, tune_data_for

    _, yaml_data, _, _ = load_tune_config(config)
    tune_data = tune_data_for(config, yaml_data, {}, data_cfg)
    if tune_data != data_cfg:
        load_dataset(tune_data)
    return tune_data


def same_as_searched(plan: list[tuple[str, dict, TrainSettings]]) -> list[str]:
    """The rows of ``plan`` that would repeat the searched net's own training (the search returned that
    baseline, with those settings): not retrained, the report says so."""
    from ..space.arch import validate_arch

    _, arch, tcfg = plan[0]
    mine = validate_arch(arch, fill_legacy=True)
    return [name for name, a, t in plan[1:] if t == tcfg and validate_arch(a, fill_legacy=True) == mine]


def check_out(rc: RecipeSettings) -> Path:
    """``rc.out`` ready for a new recipe: earlier results are refused unless ``force`` (then removed)."""
    return output_folder(rc.out, OUTPUTS, force=rc.force, what="an earlier recipe's results")


def run_recipe(rc: RecipeSettings, data_cfg: DataSettings, train_cfg: TrainSettings,
               log: Callable[[str], None] = print) -> RecipeResult:
    from ..data import load_dataset
    from ..deploy import evaluate_model, retrain
    from ..space.draw import draw
    from ..experiment.lifecycle import check_config, with_trial_flags
    from .run import run_experiment
    from ..experiment.records import experiment_dir

    check_config(Path(rc.search_config))  # before anything is removed or started
    if rc.tune_first:
        check_tune_first(rc.search_config)
    tune_data = _tune_data(rc.tune_config, data_cfg)  # the tunes' configs and data too: not found out later
    first_data = _tune_data(rc.tune_first, data_cfg)
    data = load_dataset(data_cfg, native=True)  # a bad --data-root stops here, before the search
    out = check_out(rc)
    times: dict[str, float] = {}
    t_all = time.perf_counter()

    def phase(name: str, t0: float) -> None:
        times[name] = round(times.get(name, 0.0) + time.perf_counter() - t0, 1)

    search_config, tuned_first = rc.search_config, None
    if rc.tune_first:
        from .tune import run_tune

        t = time.perf_counter()
        first = run_tune("unet", rc.tune_first, out / "tune_first", data=first_data, log=log)
        tuned_first = first.overrides()
        flags = trial_flags(dataclasses.replace(train_cfg, **tuned_first))
        search_config = str(with_trial_flags(Path(rc.search_config), flags, out / "search_config.yml"))
        log(f"tune-first: every search trial trains with {' '.join(flags)}")
        phase("tune_first", t)
    t = time.perf_counter()
    top, _ = run_experiment(search_config, RunSettings(port=rc.port, timeout=rc.search_timeout,
                                                    out=str(out / "top_arch.json")), log=log)
    phase("search", t)
    if rc.confirm:  # the search's export, in memory, confirmed and written again in its place
        from .confirm import confirm_top

        t = time.perf_counter()
        top = confirm_top(experiment_dir(top.experiment_id), top, rc.confirm, 1, top.metric, log)
        schema.save(top, out / "top_arch.json")
        log(f"confirm: {top.note}")
        phase("confirm", t)
    t = time.perf_counter()
    search = make_report(experiment_dir(top.experiment_id), out / "search", title=f"search {top.experiment_id}")
    phase("search_report", t)

    searched_train = dataclasses.replace(train_cfg, **top.recipe_settings()) if rc.searched_recipe else train_cfg
    if tuned_first:  # the settings its trials trained with
        searched_train = dataclasses.replace(searched_train, **tuned_first)
    if rc.tune_config:
        from .tune import run_tune

        t = time.perf_counter()
        tuned = run_tune(out / "top_arch.json", rc.tune_config, out / "tune", data=tune_data, log=log)
        searched_train = dataclasses.replace(searched_train, **tuned.overrides())
        phase("tune", t)

    networks = retrain_plan(top.arch, rc, train_cfg, searched_train)
    again = same_as_searched(networks)
    rows, first_ckpt = [], {}
    for name, arch, tcfg in (row for row in networks if row[0] not in again):
        draw(arch, out / f"arch_{name}.png", f"{name}", None)
        for run in range(rc.repeats):
            folder = out / name / (f"run{run}" if rc.repeats > 1 else "")
            log(f"--- retrain {name}" + (f" (run {run + 1} of {rc.repeats})" if rc.repeats > 1 else "") + " ---")
            t = time.perf_counter()
            trained = retrain(arch, data_cfg, dataclasses.replace(tcfg, seed=tcfg.seed + run), folder, data=data,
                              progress=True, log=log)
            meta = trained.meta
            seconds = time.perf_counter() - t
            phase(f"retrain_{name}", t)
            t = time.perf_counter()
            rep = evaluate_model(trained.model, meta, data, "val", tcfg.device, native=True, confusion=True,
                                 where=str(folder))
            phase(f"eval_{name}", t)
            rows.append(NetworkResult(network=name, run=run, summary=meta.summary, params=meta.params,
                                      mmacs=meta.mmacs, val=rep.scores, best_epoch=meta.epoch,
                                      retrain_seconds=round(seconds, 1), checkpoint=str(folder),
                                      train=meta.train))
            if run == 0:
                first_ckpt[name] = trained
                confusion_png(rep.confusion, rep.class_names, out / f"confusion_{name}.png",
                              f"{name}: val confusion (% of true class)")
    predictions_png(first_ckpt, data, out / "predictions_val.png")
    times["total"] = round(time.perf_counter() - t_all, 1)
    result = RecipeResult(experiment_id=top.experiment_id or "", search_config=rc.search_config,
                          search_trials=search.trials, search_succeeded=search.succeeded,
                          winner_search_dice=(top.metrics or {}).get("dice"),
                          winner_chosen_by=top.note if top.confirmation else None, data=data_cfg, train=train_cfg,
                          tuned_train=searched_train if searched_train != train_cfg else None,
                          searched_recipe=top.recipe if rc.searched_recipe else None, tune_data=tune_data or first_data,
                          tuned_first=tuned_first, same_as_searched=again, split="val",
                          resolution=rep.resolution, seconds=times, networks=rows, class_names=data.class_names,
                          device=_device(train_cfg.device))
    schema.save(result, out / "results.json")
    atomic_write_text(out / "report.md", markdown(result))
    return result


def _spread(values: list[float]) -> str:
    mean = 100 * statistics.mean(values)
    if len(values) == 1:
        return f"{mean:.1f}"
    return f"{mean:.1f} ({100 * min(values):.1f}-{100 * max(values):.1f})"


def summary_rows(result: RecipeResult) -> list[dict]:
    """Per network: the mean (min-max) of its runs' val scores and its cost."""
    out = []
    for name in dict.fromkeys(r.network for r in result.networks):
        runs = [r for r in result.networks if r.network == name]
        out.append({"network": name, "runs": len(runs), "miou": [r.val.miou for r in runs],
                    "dice": [r.val.dice for r in runs], "params": runs[0].params, "mmacs": runs[0].mmacs,
                    "summary": runs[0].summary, "iou": [r.val.iou_per_class for r in runs],
                    "epochs": [r.best_epoch for r in runs]})
    return out


def _data_name(d: DataSettings | None) -> str:
    if d is None:
        return "(not recorded)"
    size = "x".join(map(str, d.size)) if d.size else "its own size"
    return f"{d.dataset}{f' ({d.data_root})' if d.data_root else ''} at {size}"


def _tuned_note(s: RecipeResult) -> str:
    if s.tuned_first:
        return (f"the U-Net's, tuned before the search (see tune_first/) on data {_data_name(s.tune_data)}, which "
                f"every search trial trained with")
    if s.tune_data or s.tuned_train and not s.searched_recipe:
        return f"tuned (see tune/) on data {_data_name(s.tune_data)}"
    return ""


def markdown(s: RecipeResult) -> str:
    t = s.train
    rows = summary_rows(s)
    lines = [f"# Recipe report: search {s.experiment_id} + retrain", "",
             f"Device: {s.device}. Search config: `{s.search_config}` ({s.search_trials} trials, "
             f"{s.search_succeeded} succeeded). Retrain: {t.epochs} epochs, batch {t.batch_size}, peak lr {t.lr}, "
             f"loss {t.loss}, class weights {t.class_weights}, data {_data_name(s.data)}."
             + (" The searched net trained with its own settings ("
                + " and ".join(filter(None, ["the recipe its search chose" if s.searched_recipe else "",
                                             _tuned_note(s)]))
                + f"): lr {s.tuned_train.lr}, weight decay {s.tuned_train.weight_decay}, loss {s.tuned_train.loss}, "
                f"class weights {s.tuned_train.class_weights}, batch {s.tuned_train.batch_size}, scale "
                f"{s.tuned_train.scale_min}-{s.tuned_train.scale_max}." if s.tuned_train else "")
             + (f" The searched net was {s.winner_chosen_by}." if s.winner_chosen_by else ""), "",
             f"All scores: **{s.split}** split, scored at {s.resolution}.", "",
             "## Wall time (s)", "", "| phase | seconds |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in s.seconds.items()]
    lines += ["", f"## {s.split.capitalize()} results (same schedule for all; mean (min-max) over runs)", "",
              f"| network | runs | {s.split} mIoU | {s.split} mean Dice | params | MMACs / image | best epoch |",
              "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['network']} | {r['runs']} | {_spread(r['miou'])} | {_spread(r['dice'])} | "
                     f"{r['params']:,} | {r['mmacs']:.0f} | {', '.join(map(str, r['epochs']))} |")
    if any(r["network"].endswith(RECIPE_SUFFIX) for r in rows):
        lines += ["", f"`<baseline>{RECIPE_SUFFIX}`: that baseline trained with the searched net's settings, not the "
                      "flags; beside the searched net it parts the recipe's gain from the architecture's."]
    if s.same_as_searched:
        lines += ["", f"Not retrained: {', '.join(s.same_as_searched)}, the same network with the same settings as "
                      "the searched net (the search returned it): its scores are the searched row's."]
    if len(rows) > 1:
        best = max(rows, key=lambda r: statistics.mean(r["miou"]))
        lines += ["", f"Highest mean {s.split} mIoU: **{best['network']}** ({_spread(best['miou'])}, "
                      f"{best['mmacs']:.0f} MMACs). It is picked on the split it is scored on, so its score is "
                      "optimistic, and a gap narrower than the runs' min-max spread is noise."]
    lines += ["", f"## Per-class {s.split} IoU (%, mean over runs)", "",
              "| class | " + " | ".join(r["network"] for r in rows) + " |", "|---|" + "---|" * len(rows)]
    for i, name in enumerate(s.class_names):
        vals = []
        for r in rows:
            v = [run[i] for run in r["iou"] if run[i] is not None]
            vals.append(f"{100 * statistics.mean(v):.1f}" if v else "-")
        lines.append(f"| {name} | " + " | ".join(vals) + " |")
    lines += ["", "Architectures:", ""] + [f"- {r['network']}: `{r['summary']}` (![{r['network']}](arch_{r['network']}.png))"
                                           for r in rows]
    lines += ["", "## Val predictions", "", "![val predictions: image, ground truth, each network](predictions_val.png)",
              "", "Pictures: `search/dice_vs_trial.png`, `search/dice_vs_mmacs.png`, `search/best_arch.png`, "
              + ", ".join(f"`confusion_{r['network']}.png`" for r in rows), ""]
    return "\n".join(lines)
