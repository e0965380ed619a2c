"""The benchmarks' command line: ``python -m bench strategies [...]`` (from the repository's root).

``strategies``: every strategy given the same compute on one proxy (:mod:`bench.strategies`): the digits
proxy (default: a quick comparison), or the CamVid search's own trial (``--dataset camvid``).
The library never imports this package.
"""
from __future__ import annotations

import sys
from pathlib import Path

from nni_seg.config.settings import Parser
from nni_seg.errors import UserError, guarded


def _out(text: str) -> None:
    print(text, flush=True)


def build(p):
    from bench.strategies import STRATEGIES

    p.add_argument("--dataset", choices=["digits", "camvid"], default="digits",
                   help="digits: a tiny proxy of digit scenes (see --proxy-*); camvid: the CamVid search's own "
                        "trial (see --trial-config)")
    p.add_argument("--strategies", nargs="+", choices=STRATEGIES, help="default: all")
    p.add_argument("--compute", type=int, help="trial-epochs per strategy run (default: 36 on camvid, "
                                               "--budget's on digits)")
    p.add_argument("--budget", type=int, help="trials at full fidelity per strategy run: compute = budget x the "
                                              "trial's epochs (default 20 on digits)")
    p.add_argument("--trial-config", default="experiments/camvid/trial_cpu.yml", help="camvid: the trial's settings")
    p.add_argument("--shard", default="0/1", help="K/N runs every N-th (strategy, seed) from the K-th, so N "
                                                  "processes share the cores and one cache")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--reuse", nargs="+", metavar="EXP_DIR", help="experiment folders whose trials (same trial "
                                                                  "settings) fill the cache before anything trains")
    p.add_argument("--table-only", action="store_true", help="table and curves of the runs done so far "
                                                              "(strategies with every seed done); trains nothing")
    p.add_argument("--proxy-size", type=int, default=24, help="digits: image size (default %(default)s)")
    p.add_argument("--proxy-epochs", type=int, default=3, help="digits: epochs (default %(default)s)")
    p.add_argument("--proxy-train", type=int, default=96, help="digits: training images (default %(default)s)")
    p.add_argument("--cache", help="the proxy's cache: (architecture, epochs) -> val Dice per epoch "
                                   "(default: OUT/proxy_cache.json)")
    p.add_argument("--out", help="folder for table.md, traces.json, curves.png and the runs (default: "
                                 "runs/bench_strategies[_camvid])")


def _digits_trial(args, out: Path) -> Path:
    """The digits proxy's trial settings, written beside its results (the trial the bench ran)."""
    import copy

    import yaml

    from bench.strategies import DIGITS_TRIAL
    from nni_seg.files import atomic_write_text

    trial = copy.deepcopy(DIGITS_TRIAL)
    trial["data"].update(size=[args.proxy_size, args.proxy_size], num_train=args.proxy_train)
    trial["train"]["epochs"] = args.proxy_epochs
    return atomic_write_text(out / "trial.yml", yaml.safe_dump(trial, sort_keys=False))


def run(args) -> int:
    from bench import strategies

    for name in ("budget", "compute", "proxy_size", "proxy_epochs", "proxy_train"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')}: must be >= 1, got {getattr(args, name)}")
    if args.budget is not None and args.compute is not None:
        raise UserError("--budget and --compute say the same thing twice: give one")
    try:
        k, n = (int(v) for v in args.shard.split("/"))
        assert 0 <= k < n
    except (ValueError, AssertionError):
        raise UserError(f"--shard: K/N with 0 <= K < N, got {args.shard!r}") from None
    camvid = args.dataset == "camvid"
    out = Path(args.out or ("runs/bench_strategies_camvid" if camvid else "runs/bench_strategies"))
    trial = Path(args.trial_config) if camvid else _digits_trial(args, out)
    epochs = args.proxy_epochs
    if camvid and args.compute is None:
        from nni_seg.config.settings import TrainSettings, load_sections

        epochs = load_sections(trial, {"train": TrainSettings}, other=("data", "budget", "trial"))["train"].epochs
    compute = args.compute or (args.budget * epochs if args.budget else 36 if camvid else 20 * epochs)
    _out(strategies.bench(args.strategies or list(strategies.STRATEGIES), args.seeds, compute, str(trial),
                          Path(args.cache or out / "proxy_cache.json"), out, (k, n), [Path(p) for p in args.reuse or []],
                          table_only=args.table_only))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    if not argv or argv[0] != "strategies":
        print("usage: python -m bench [--debug] strategies [args]  (compare NNI strategies at equal compute)",
              file=sys.stderr)
        return 0 if argv in (["-h"], ["--help"]) else 2

    def go() -> int:
        p = Parser(prog="python -m bench strategies", description="compare NNI strategies at equal compute on a proxy")
        build(p)
        return run(p.parse_args(argv[1:]))

    return guarded(go, debug)


if __name__ == "__main__":
    sys.exit(main())
