"""Trainer throughput: nni_seg's trainer vs a naive PyTorch loop, side by side in one run.

Same architecture (default: the seed net), same synthetic data (uint8 images, 11 classes), same
batch size, optimiser and loss. Modes:
  naive    fp32, NCHW, CPU DataLoader (2 workers), host->device copy per batch, loss.item() per step
  ours     nni_seg.training.trainer.fit: data cached on the device as uint8, GPU augmentation, bf16 autocast,
           channels_last, cudnn.benchmark, one host sync per epoch (on CPU: the same path in fp32)
  compile  ours + torch.compile (compile time reported)
Steady-state images/s is the median over epochs after the first. Prints a Markdown table and writes
JSON (--out). ``--profile`` then profiles one more epoch of ``ours`` (warm: cuDNN's algorithm choice is
cached) and prints where the time goes: convolutions vs normalisation, activations, pooling, ...
(device kernels on CUDA, operators on CPU), to show what keeps a net from the card's peak.
Run: python -m bench.bench_trainer [--size 360 480 --batch-size 16] [--modes ...] [--profile]

``--device cpu`` measures the CPU paths side by side instead (``cpu_matrix``): fp32 NCHW (the path
before the CPU fast path), fp32 channels-last, bf16 autocast NCHW, bf16 autocast channels-last (the
default where the CPU has native bf16), and torch.compile on top of the last, for the seed's net, the
U-Net and three sampled architectures, at the CamVid proxy (48x64) and retrain (96x128) sizes; training
steps through ``fit`` and evaluation through ``train.evaluate``; then a per-operator profile of the
slowest mode.

    python -m bench.bench_trainer --device cpu --out docs/bench_trainer_cpu.json
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch
import torch.nn.functional as F

from nni_seg.space.cost import count_macs
from nni_seg.data import SegData
from nni_seg.space.arch import arch_summary, seed_arch
from nni_seg.space.net import SegNet
from nni_seg.config.settings import TrainSettings as TrainConfig
from nni_seg.training.trainer import Normalizer, fit, resolve_device
from nni_seg.space.arch import load_arch

BF16_PEAK_TFLOPS = {"H200": 989.4, "H100": 989.4, "A100": 312.0}  # dense bf16, vendor spec

# profile categories: first pattern (lower-case substring of a kernel / operator name) wins
CATEGORIES = {
    "normalisation": ("batch_norm", "batchnorm", "bn_fw", "bn_bw", "welford", "norm"),  # before cudnn::bn_*
    "convolution": ("conv", "cudnn", "xmma", "gemm", "cutlass", "wgrad", "dgrad", "fprop", "mkldnn"),
    "loss": ("nll", "softmax", "cross_entropy"),
    "optimizer": ("adam", "foreach", "multi_tensor", "lerp", "addcdiv", "addcmul"),
    "pooling": ("pool",),
    "upsampling": ("upsample", "interpolate", "grid_sampler"),
    "activation / fused (triton)": ("relu", "silu", "gelu", "triton", "threshold", "sigmoid"),
    "copy / cast / fill": ("copy", "memcpy", "memset", "fill", "cat", "to_copy", "contiguous", "clone"),
}


def synthetic(n: int, size: tuple[int, int], classes: int = 11, seed: int = 0) -> SegData:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 3, *size), generator=g, dtype=torch.uint8)
    y = torch.randint(0, classes, (n, *size), generator=g, dtype=torch.uint8)
    return SegData("synthetic", x, y, x[:8], y[:8], [f"c{i}" for i in range(classes)])


def naive(model, data: SegData, cfg: TrainConfig, device: torch.device, workers: int) -> list[float]:
    """The loop most tutorials write. Returns per-epoch seconds."""
    ds = torch.utils.data.TensorDataset(data.train_images, data.train_masks)
    dl = torch.utils.data.DataLoader(ds, batch_size=cfg.batch_size, shuffle=True, drop_last=True,
                                     num_workers=workers, persistent_workers=workers > 0)
    norm = Normalizer.from_images(data.train_images).to(device)
    model = model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    times = []
    for _ in range(cfg.epochs):
        t0 = time.perf_counter()
        running = 0.0
        for x, y in dl:
            x, y = norm(x.to(device)), y.to(device).long()
            if torch.rand(()) < 0.5:  # the augmentation such a loop usually has
                x, y = x.flip(-1), y.flip(-1)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            running += loss.item()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return times


def category(name: str) -> str:
    low = name.lower()
    return next((c for c, pats in CATEGORIES.items() if any(p in low for p in pats)), "other elementwise")


def profile_epoch(arch: dict, data: SegData, cfg: TrainConfig, device: torch.device) -> dict:
    """Self time per category and the 12 costliest kernels (CUDA) or operators (CPU) of one epoch of fit."""
    from torch.profiler import ProfilerActivity, profile

    on_device = device.type == "cuda"
    model = SegNet(arch, 11)
    with profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_device else [])) as prof:
        fit(model, data, cfg)
    rows = []
    for e in prof.key_averages():
        if on_device and e.device_type != torch.autograd.DeviceType.CUDA:
            continue
        if not on_device and not e.key.startswith("aten::"):
            continue
        us = e.self_device_time_total if on_device else e.self_cpu_time_total
        if us > 0:
            rows.append((e.key, us / 1e3, e.count))
    total = sum(ms for _, ms, _ in rows) or 1.0
    cats: dict[str, float] = {}
    for name, ms, _ in rows:
        c = category(name)
        cats[c] = cats.get(c, 0.0) + ms
    top = sorted(rows, key=lambda r: -r[1])[:12]
    return {"what": "CUDA kernels" if on_device else "CPU operators", "total_ms": round(total, 1),
            "categories": {c: round(ms, 1) for c, ms in sorted(cats.items(), key=lambda kv: -kv[1])},
            "top": [{"name": n[:90], "ms": round(ms, 1), "calls": c, "category": category(n)} for n, ms, c in top]}


CPU_MODES = {"fp32": dict(amp=False, channels_last=False), "fp32_cl": dict(amp=False, channels_last=True),
             "bf16": dict(amp=True, channels_last=False), "bf16_cl": dict(amp=True, channels_last=True),
             "bf16_cl_compile": dict(amp=True, channels_last=True, compile=True)}


def sampled_archs() -> dict[str, dict]:
    """Three architectures of the space beside the references: the first seeded draws (seed 0, 1, ...) that
    have a context block, parallel cells, and (third) any draw, each at most the U-Net's MMACs at 96x128."""
    import random

    from nni_seg.space.arch import CHOICES, canonical, unet_arch, validate_arch
    from nni_seg.space.cost import arch_mmacs

    limit = arch_mmacs(unet_arch(), 11, 3, (96, 128))
    wants = {"sampled_context": lambda a: a["context"] != "none",
             "sampled_parallel": lambda a: a["enc_join"] != "serial" and a["enc_op2"] != "none",
             "sampled_any": lambda a: True}
    found: dict[str, dict] = {}
    for seed in range(1000):
        rng = random.Random(seed)
        arch = canonical(validate_arch({k: rng.choice(v) for k, v in CHOICES.items()}))
        for name, ok in wants.items():
            if name not in found and ok(arch) and arch_mmacs(arch, 11, 3, (96, 128)) <= limit:
                found[name] = arch
                break
        if len(found) == len(wants):
            break
    return found


def cpu_matrix(args) -> dict:
    """Training and evaluation img/s of every CPU path, per architecture and size, in one run."""
    from nni_seg.space.arch import unet_arch
    from nni_seg.training.precision import compute_path, cpu_bf16_unit
    from nni_seg.training.trainer import score_split, split_metric

    device = torch.device("cpu")
    if args.threads:
        torch.set_num_threads(args.threads)
    archs = {"seed": seed_arch(), "unet": unet_arch(), **sampled_archs()}
    archs = {k: v for k, v in archs.items() if not args.archs or k in args.archs}
    sizes = [tuple(s) for s in args.cpu_sizes]
    modes = [m for m in args.modes if m in CPU_MODES] or list(CPU_MODES)
    results = {"device": platform.processor() or "cpu", "bf16_unit": cpu_bf16_unit(), "torch": torch.__version__,
               "threads": torch.get_num_threads(), "batch_size": args.batch_size, "images_per_epoch": args.images,
               "epochs": args.epochs, "archs": {n: arch_summary(a) for n, a in archs.items()}, "rows": []}
    print(f"CPU paths on {results['device']} (native bf16: {results['bf16_unit']}), "
          f"{results['threads']} threads, batch {args.batch_size}")
    for size in sizes:
        data = synthetic(args.images, size)
        for name, arch in archs.items():
            row = {"arch": name, "size": list(size), "mmacs": round(count_macs(SegNet(arch, 11), (1, 3, *size)) / 1e6, 1),
                   "train": {}, "eval": {}}
            run_modes = [m for m in modes if not (m.endswith("compile") and (name not in ("seed", "unet")
                                                                            or size != sizes[-1]))]
            # compile costs minutes on 2 cores: the references at the retrain size only
            train_s: dict[str, list[float]] = {m: [] for m in run_modes}
            eval_s: dict[str, list[float]] = {m: [] for m in run_modes}
            for rep in range(args.repeats):  # modes interleaved, so a load that comes and goes hits each alike
                for mode in run_modes:
                    flags = CPU_MODES[mode]
                    torch.manual_seed(0)
                    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, device="cpu", augment=True,
                                      threads=args.threads, **flags)
                    model = SegNet(arch, 11)
                    t0 = time.perf_counter()
                    res = fit(model, data, cfg)
                    if mode.endswith("compile") and rep == 0:
                        row["compile_first_fit_seconds"] = round(time.perf_counter() - t0, 1)
                    train_s[mode] += [h.seconds for h in res.history[1:]]  # the first epoch warms oneDNN up
                    path = compute_path(device, cfg.amp, cfg.channels_last)
                    norm = Normalizer.from_images(data.train_images)
                    score_split(model, norm, data.train_images[:8], data.train_masks[:8], split_metric(data), path,
                                cfg.eval_batch_size)
                    t0 = time.perf_counter()
                    score_split(model, norm, data.train_images, data.train_masks, split_metric(data), path, cfg.eval_batch_size)
                    eval_s[mode].append(time.perf_counter() - t0)
            step_imgs = (args.images // args.batch_size) * args.batch_size
            for mode in run_modes:
                row["train"][mode] = round(step_imgs / statistics.median(train_s[mode]), 2)
                row["eval"][mode] = round(len(data.train_images) / statistics.median(eval_s[mode]), 2)
            base_t, base_e = row["train"].get("fp32"), row["eval"].get("fp32")
            row["train_x"] = {m: round(v / base_t, 2) for m, v in row["train"].items()} if base_t else {}
            row["eval_x"] = {m: round(v / base_e, 2) for m, v in row["eval"].items()} if base_e else {}
            results["rows"].append(row)
            print(f"{name} {size[0]}x{size[1]}: train {row['train']} (x fp32 {row['train_x']}); "
                  f"eval {row['eval']} (x fp32 {row['eval_x']})", flush=True)
            if args.out:
                with open(args.out, "w") as f:
                    json.dump(results, f, indent=2)
    print(cpu_table(results, modes))
    if args.profile:  # the mode that gains least over fp32 at the retrain size, and the U-Net's default path
        row, mode = min(((r, m) for r in results["rows"] for m in r["train"]
                         if r["size"] == list(sizes[-1]) and m != "fp32"), key=lambda rm: rm[0]["train_x"][rm[1]])
        results["profiles"] = []
        for name, m, why in ((row["arch"], mode, "the mode that gains least over fp32"),
                             ("unet", "bf16_cl", "the default path of the U-Net")):
            if name not in archs:
                continue
            cfg = TrainConfig(epochs=1, batch_size=args.batch_size, device="cpu", augment=True, threads=args.threads,
                              **{k: v for k, v in CPU_MODES[m].items() if k != "compile"})
            p = {"arch": name, "mode": m, "size": list(sizes[-1]),
                 **profile_epoch(archs[name], synthetic(args.images, sizes[-1]), cfg, device)}
            results["profiles"].append(p)
            print_profile(p, f"{why} ({name}, {m}, {sizes[-1][0]}x{sizes[-1][1]})")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=2)
    return results


def print_profile(p: dict, what: str) -> None:
    print(f"\nprofile of {what} ({p['what']}, self time, {p['total_ms']} ms in all)")
    print("| category | ms | % |\n|---|---|---|")
    for c, ms in p["categories"].items():
        print(f"| {c} | {ms} | {100 * ms / p['total_ms']:.1f} |")
    print("\n| kernel / operator | category | ms | calls |\n|---|---|---|---|")
    for r in p["top"]:
        print(f"| `{r['name']}` | {r['category']} | {r['ms']} | {r['calls']} |")


def cpu_table(results: dict, modes: list[str]) -> str:
    head = "| network | size | MMACs | " + " | ".join(f"train {m}" for m in modes) + " | " + \
        " | ".join(f"eval {m}" for m in modes) + " |"
    lines = [head, "|" + "---|" * (3 + 2 * len(modes))]
    for r in results["rows"]:
        cell = lambda kind, m: (f"{r[kind][m]} ({r[kind + '_x'][m]:.2f}x)" if m in r[kind] else "-")  # noqa: E731
        lines.append(f"| {r['arch']} | {r['size'][0]}x{r['size'][1]} | {r['mmacs']} | "
                     + " | ".join(cell("train", m) for m in modes) + " | "
                     + " | ".join(cell("eval", m) for m in modes) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, nargs=2, default=[360, 480])
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--images", type=int, default=368, help="training images per epoch")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--arch", help="architecture JSON (default: the seed net)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers of the naive loop")
    ap.add_argument("--modes", nargs="+", default=["naive", "ours", "compile"],
                    help="naive, ours, compile; with --device cpu (default there: all): " + ", ".join(CPU_MODES))
    ap.add_argument("--out", help="write results as JSON")
    ap.add_argument("--profile", action="store_true", help="then profile one epoch of `ours` (CPU: of the slowest mode)")
    ap.add_argument("--cpu-sizes", type=int, nargs=2, action="append", default=None,
                    help="--device cpu: sizes H W (repeatable; default 48 64 and 96 128)")
    ap.add_argument("--threads", type=int, default=0, help="--device cpu: torch threads (0: torch's default)")
    ap.add_argument("--repeats", type=int, default=3, help="--device cpu: rounds over the modes (medians reported)")
    ap.add_argument("--archs", nargs="+", help="--device cpu: only these of seed, unet, sampled_context, "
                                               "sampled_parallel, sampled_any")
    args = ap.parse_args()
    if args.device == "cpu" and (args.modes == ap.get_default("modes") or set(args.modes) <= set(CPU_MODES)):
        if args.cpu_sizes is None:
            args.cpu_sizes = [[48, 64], [96, 128]]
        if args.modes == ap.get_default("modes"):
            args.modes = list(CPU_MODES)
        cpu_matrix(args)
        return

    device = resolve_device(args.device)
    size = tuple(args.size)
    arch = load_arch(args.arch) if args.arch else seed_arch()
    data = synthetic(args.images, size)
    macs = count_macs(SegNet(arch, 11), (1, 3, *size))
    train_flop_per_image = 3 * 2 * macs  # forward + backward ~ 3x forward; 2 FLOP per MAC
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    peak = next((v for k, v in BF16_PEAK_TFLOPS.items() if k in name), None) if device.type == "cuda" else None
    results = {"device": name, "torch": torch.__version__, "size": list(size), "batch_size": args.batch_size,
               "images_per_epoch": args.images, "epochs": args.epochs, "gmac_per_image": macs / 1e9,
               "bf16_peak_tflops": peak, "modes": {}}
    for mode in args.modes:
        torch.manual_seed(0)
        model = SegNet(arch, 11)
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, device=str(device), augment=True,
                          compile=mode == "compile", amp=mode != "naive", channels_last=mode != "naive")
        if mode == "naive":
            times = naive(model, data, cfg, device, args.workers)
        else:
            times = [h.seconds for h in fit(model, data, cfg).history]
        steps_imgs = (args.images // args.batch_size) * args.batch_size
        steady = statistics.median(times[1:]) if len(times) > 1 else times[0]
        ips = steps_imgs / steady
        r = {"images_per_second": round(ips, 1), "epoch_seconds": [round(t, 3) for t in times],
             "first_epoch_overhead_s": round(times[0] - steady, 2),
             "achieved_tflops": round(ips * train_flop_per_image / 1e12, 2)}
        if peak:
            r["fraction_of_bf16_peak"] = round(r["achieved_tflops"] / peak, 4)
        if device.type == "cuda":
            r["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
        results["modes"][mode] = r
        print(f"{mode}: {r}", flush=True)
    base = results["modes"].get("naive", {}).get("images_per_second")
    print(f"\n{name}, torch {torch.__version__}, {size[0]}x{size[1]}, batch {args.batch_size}, "
          f"{macs / 1e9:.2f} GMAC/image")
    print("| mode | img/s | x naive | TFLOP/s | % bf16 peak | peak mem GiB | first-epoch overhead s |")
    print("|---|---|---|---|---|---|---|")
    for mode, r in results["modes"].items():
        ratio = f"{r['images_per_second'] / base:.2f}" if base else "-"
        frac = f"{100 * r['fraction_of_bf16_peak']:.1f}" if "fraction_of_bf16_peak" in r else "-"
        print(f"| {mode} | {r['images_per_second']} | {ratio} | {r['achieved_tflops']} | {frac} | "
              f"{r.get('peak_memory_gib', '-')} | {r['first_epoch_overhead_s']} |")
    if args.profile:
        cfg = TrainConfig(epochs=1, batch_size=args.batch_size, device=str(device), augment=True)
        print_profile(results.setdefault("profile", profile_epoch(arch, data, cfg, device)), "one epoch of `ours`")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
