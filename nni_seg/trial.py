"""One trial: build the architecture, train it, report Dice. Runs under NNI or standalone.

Under NNI (``NNI_PLATFORM`` set) the architecture comes from ``nni.get_next_parameter()``, each
epoch's validation Dice goes to ``nni.report_intermediate_result`` and the final one to
``nni.report_final_result``. Standalone, ``--arch file.json`` names the architecture (a plain dict
of choices, or an exported top-architecture file), so the same code retrains.

A trial that fails (out of memory, NaN/inf loss, any exception) prints one ``error:`` line with the
reason, leaves a FAILED record with it, and exits non-zero, so NNI marks it FAILED and tuners skip it
(``trial_end(success=False)``). For testing that path, ``NNI_SEG_FAULTS="0:nan,1:oom,2:raise"``
injects a fault into the trials with those NNI sequence ids (``*`` matches any trial).

Either way the trial writes its own record (``nni_seg_record.json``: architecture, parameter id,
metrics, settings) into ``$NNI_OUTPUT_DIR`` or ``--out``: the ground truth that export reads.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import threading
import time
import traceback
from dataclasses import asdict
from pathlib import Path

from .config import add_dataclass_args, from_args
from .data import DataConfig
from .records import RECORD_NAME, atomic_write_json
from .train import TrainConfig


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m nni_seg.trial", description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", help="architecture JSON, or 'seed' for the seed's fixed net (standalone); "
                                  "under NNI the tuner chooses")
    p.add_argument("--out", help="output folder for the record (default: $NNI_OUTPUT_DIR or runs/<time>)")
    p.add_argument("--max-mflops", type=float, help="reject (do not train) architectures above this many MMACs/image")
    p.add_argument("--max-params", type=int, help="reject (do not train) architectures above this many parameters")
    add_dataclass_args(p, DataConfig, "data")
    add_dataclass_args(p, TrainConfig, "training")
    return p


def load_arch_file(path: str) -> dict:
    """A plain architecture dict, the ``arch`` of an exported top-architecture file, or ``seed``."""
    from .space import seed_arch, validate_arch

    if path == "seed":
        return seed_arch()
    try:
        obj = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ValueError(f"architecture file not found: {path}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"architecture file {path} is not valid JSON: {e}") from None
    if isinstance(obj, dict) and isinstance(obj.get("arch"), dict):
        obj = obj["arch"]
    return validate_arch(obj, source=path)


FAULTS = ("nan", "oom", "raise")


def injected_fault(sequence_id, spec: str | None = None) -> str | None:
    """The fault ``NNI_SEG_FAULTS`` asks for this trial (``seq:kind`` items, comma-separated), or None."""
    spec = os.environ.get("NNI_SEG_FAULTS", "") if spec is None else spec
    for item in filter(None, (i.strip() for i in spec.split(","))):
        seq, _, kind = item.partition(":")
        if kind not in FAULTS:
            raise ValueError(f"NNI_SEG_FAULTS item {item!r}: fault must be one of {', '.join(FAULTS)}")
        if seq == "*" or seq == str(sequence_id):
            return kind
    return None


def inject_fault(model, kind: str) -> None:
    """Make the first training forward pass fail the way ``kind`` does in real life."""
    import torch

    def hook(module, inputs, output):
        if not module.training:
            return None
        if kind == "nan":
            return output * float("nan")  # the loss becomes NaN: the trainer's divergence check fires
        if kind == "oom":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (injected by NNI_SEG_FAULTS)")
        raise RuntimeError("injected failure (NNI_SEG_FAULTS)")

    model.register_forward_hook(hook)


def failure_reason(e: BaseException) -> str:
    """One line: what went wrong and, where we know, what to do."""
    import torch

    if isinstance(e, torch.OutOfMemoryError):
        return f"out of memory: {str(e).splitlines()[0]} (lower --batch-size or --size, or the search's max_mflops)"
    return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}".rstrip(": ")


def run_trial(arch: dict, data_cfg: DataConfig, train_cfg: TrainConfig, out_dir: Path,
              reporter=None, extra: dict | None = None, model=None,
              max_mflops: float | None = None, max_params: int | None = None, fault: str | None = None) -> dict:
    """Train ``arch`` (or the already-built ``model`` of it) and write its record.

    ``reporter`` gets ``intermediate(dict)`` after each epoch and ``final(dict)`` at the end. An
    architecture over the ``max_mflops`` / ``max_params`` budget is not trained: its record says
    REJECTED and the reported final result is Dice 0 with ``rejected: 1`` (so tuners learn to avoid it).
    """
    from .cost import count_macs, count_params, measure_latency
    from .data import load_dataset
    from .space import arch_summary, build_model

    record = {
        "status": "RUNNING", "arch": arch, "summary": arch_summary(arch),
        "data": asdict(data_cfg), "train": asdict(train_cfg), **(extra or {}),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        # where it ran: NNI's GPU scheduler assigns GPUs through CUDA_VISIBLE_DEVICES (None: not set)
        "host": socket.gethostname(), "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }
    path = out_dir / RECORD_NAME
    atomic_write_json(path, record)
    try:
        data = load_dataset(data_cfg)
        if model is None:
            model = build_model(arch, data.num_classes, data.in_channels)
        h, w = data.size
        record["params"] = count_params(model)
        record["mflops"] = round(count_macs(model, (1, data.in_channels, h, w)) / 1e6, 3)  # MMACs per image
        record["dataset"] = {"name": data.name, "size": [h, w], "classes": data.class_names,
                             "num_train": len(data.train_images), "num_val": len(data.val_images)}
        record["history"] = []
        over = []
        if max_mflops and record["mflops"] > max_mflops:
            over.append(f"{record['mflops']} MMACs > {max_mflops}")
        if max_params and record["params"] > max_params:
            over.append(f"{record['params']} params > {max_params}")
        if over:
            reason = "over budget: " + ", ".join(over)
            print(f"rejected before training: {reason}", flush=True)
            metrics = {"default": 0.0, "dice": 0.0, "miou": 0.0, "rejected": 1, "params": record["params"],
                       "mflops": record["mflops"]}
            record.update(status="REJECTED", reason=reason, metrics=metrics)
            if reporter:
                reporter.final(metrics)
            return record

        def on_epoch(epoch: int, m: dict) -> None:
            record["history"].append({k: m[k] for k in ("epoch", "loss", "dice", "miou")})
            atomic_write_json(path, record)
            if reporter:
                reporter.intermediate({"default": m["dice"], "miou": m["miou"], "loss": m["loss"]})

        from .train import fit

        if fault:
            inject_fault(model, fault)
        result = fit(model, data, train_cfg, on_epoch=on_epoch)
        final = result["final"]
        # latency of one image at the data's size on the trial's device (eval mode, fp32, batch 1)
        latency = round(measure_latency(model, (1, data.in_channels, h, w)), 3)
        metrics = {"default": final["dice"], "dice": final["dice"], "miou": final["miou"],
                   "pixel_acc": final["pixel_acc"], "params": record["params"], "mflops": record["mflops"],
                   "latency_ms": latency}
        for name, d in zip(data.class_names, final["dice_per_class"]):
            if d is not None:
                metrics[f"dice_{name}"] = d
        record.update(status="SUCCEEDED", metrics=metrics, dice_per_class=final["dice_per_class"],
                      iou_per_class=final["iou_per_class"], train_seconds=result["train_seconds"],
                      images_per_second=result["images_per_second"], device=result["device"])
        if reporter:
            reporter.final(metrics)
        return record
    except KeyboardInterrupt as e:  # NNI stops trials with SIGINT (assessor, trial kill, nnictl stop); SIGTERM; Ctrl-C
        record.update(status="CANCELED", error=f"canceled ({str(e) or 'interrupted'})")
        raise
    except BaseException as e:
        record.update(status="FAILED", error=failure_reason(e), traceback=traceback.format_exc())
        raise
    finally:
        record["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        atomic_write_json(path, record)


class NniReporter:
    def __init__(self):
        import nni

        self.nni = nni

    def intermediate(self, metrics: dict) -> None:
        self.nni.report_intermediate_result(metrics)

    def final(self, metrics: dict) -> None:
        self.nni.report_final_result(metrics)


class TrialSignal(KeyboardInterrupt):
    """The trial was told to stop by signal ``args[1]``; its record says CANCELED."""

    def __str__(self) -> str:
        return self.args[0]


def _on_signal(signum, frame):
    raise TrialSignal(signal.Signals(signum).name, signum)


def main(argv: list[str] | None = None) -> int:
    """Entry point. A trial stopped by SIGINT (how NNI 3.0 stops trials) or SIGTERM writes its CANCELED
    record, then dies by that same signal: NNI counts only a signal death as EARLY_STOPPED /
    USER_CANCELED, any exit code as FAILED."""
    args = build_parser().parse_args(argv)
    if threading.current_thread() is not threading.main_thread():
        return _main(args)
    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        return _main(args)
    except TrialSignal as e:
        print(f"error: trial canceled ({e})", file=sys.stderr, flush=True)
        signal.signal(e.args[1], signal.SIG_DFL)
        os.kill(os.getpid(), e.args[1])
        return 128 + e.args[1]  # only if the default action did not end the process
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _main(args: argparse.Namespace) -> int:
    data_cfg, train_cfg = from_args(DataConfig, args), from_args(TrainConfig, args)
    in_nni = bool(os.environ.get("NNI_PLATFORM"))
    try:
        if in_nni:
            import nni
            import nni.trial

            from .space import decode_parameters, validate_arch

            params = nni.get_next_parameter()
            if params is None:
                raise RuntimeError("NNI gave this trial no parameters")
            arch = validate_arch(decode_parameters(params), source="trial parameters")
            fault = injected_fault(nni.get_sequence_id())
            extra = {"trial_id": nni.get_trial_id(), "experiment_id": nni.get_experiment_id(),
                     "parameter_id": nni.trial._params["parameter_id"], "sequence_id": nni.get_sequence_id(),
                     "raw_parameters": params}
            out = Path(os.environ.get("NNI_OUTPUT_DIR", "."))
            reporter = NniReporter()
        else:
            if not args.arch:
                raise ValueError("standalone trial needs --arch FILE (under NNI the tuner picks the architecture)")
            arch = load_arch_file(args.arch)
            extra, reporter = {"trial_id": "standalone"}, None
            fault = injected_fault("standalone")
            out = Path(f"runs/trial-{time.strftime('%Y%m%d-%H%M%S')}")
        if args.out:
            out = Path(args.out)
        record = run_trial(arch, data_cfg, train_cfg, out, reporter, extra,
                           max_mflops=args.max_mflops, max_params=args.max_params, fault=fault)
    except (ValueError, KeyError, FileNotFoundError) as e:
        print(f"error: {e.args[0] if e.args else e}", file=sys.stderr)
        return 2
    except Exception as e:  # the record says FAILED with the traceback; NNI marks the trial FAILED
        print(f"error: trial failed: {failure_reason(e)}", file=sys.stderr)
        return 1
    print(f"{record['status']} dice={record['metrics']['dice']:.4f} miou={record['metrics']['miou']:.4f} "
          f"params={record['params']} mflops={record['mflops']} record={out / RECORD_NAME}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
