"""The benchmarks' command line: ``python -m bench strategies [...]`` (from the repository's root).

``strategies``: every strategy for the same budget, on the digits proxy (default; :mod:`bench.strategies`)
or at equal compute on the CamVid search's own trial (``--dataset camvid``; :mod:`bench.compute`).
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
    from bench.compute import STRATEGIES as CAMVID_STRATEGIES
    from bench.strategies import STRATEGIES

    p.add_argument("--dataset", choices=["digits", "camvid"], default="digits",
                   help="digits: every tuner at equal trials on a tiny cached proxy; camvid: equal compute "
                        "(trial-epochs) on the CamVid search's own trial (see --trial-config)")
    p.add_argument("--strategies", nargs="+", choices=sorted(set(STRATEGIES) | set(CAMVID_STRATEGIES)),
                   help=f"digits: {', '.join(STRATEGIES)} (default all); camvid: {', '.join(CAMVID_STRATEGIES)}")
    p.add_argument("--budget", type=int, default=20, help="digits: trials per strategy run")
    p.add_argument("--compute", type=int, default=36, help="camvid: trial-epochs per strategy run")
    p.add_argument("--trial-config", default="experiments/camvid/trial_cpu.yml", help="camvid: the trial's settings")
    p.add_argument("--shard", default="0/1", help="camvid: K/N runs every N-th (strategy, seed) from the K-th, so "
                                                  "N processes share the cores and one cache")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--reuse", nargs="+", metavar="EXP_DIR", help="camvid: experiment folders whose trials (same trial "
                                                                  "settings) fill the cache before anything trains")
    p.add_argument("--table-only", action="store_true", help="camvid: table and curves of the runs done so far "
                                                              "(strategies with every seed done); trains nothing")
    p.add_argument("--proxy-size", type=int, default=24, help="proxy: image size (default %(default)s)")
    p.add_argument("--proxy-epochs", type=int, default=3, help="proxy: epochs (default %(default)s)")
    p.add_argument("--proxy-train", type=int, default=96, help="proxy: training images (default %(default)s)")
    p.add_argument("--cache", help="proxy: JSON table arch -> Dice (default: runs/proxy_<size>px_<epochs>ep_<n>.json)")
    p.add_argument("--out", default="runs/bench_strategies", help="folder for table.md, curves.json, curves.png")


def run(args) -> int:
    for name in ("budget", "compute", "proxy_size", "proxy_epochs", "proxy_train"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')}: must be >= 1, got {getattr(args, name)}")
    if args.dataset == "camvid":
        from bench import compute as compute_bench

        bad = [s for s in args.strategies or [] if s not in compute_bench.STRATEGIES]
        if bad:
            raise UserError(f"--strategies: {', '.join(bad)} not for camvid; valid: {', '.join(compute_bench.STRATEGIES)}")
        try:
            k, n = (int(v) for v in args.shard.split("/"))
            assert 0 <= k < n
        except (ValueError, AssertionError):
            raise UserError(f"--shard: K/N with 0 <= K < N, got {args.shard!r}") from None
        out = Path(args.out if args.out != "runs/bench_strategies" else "runs/bench_strategies_camvid")
        cache = Path(args.cache or out / "proxy_cache.json")
        _out(compute_bench.bench(args.strategies or list(compute_bench.STRATEGIES), args.seeds, args.compute,
                                 args.trial_config, cache, out, (k, n), [Path(p) for p in args.reuse or []],
                                 table_only=args.table_only))
        return 0
    from bench.strategies import STRATEGIES, run_bench

    bad = [s for s in args.strategies or [] if s not in STRATEGIES]
    if bad:
        raise UserError(f"--strategies: {', '.join(bad)} not for digits; valid: {', '.join(STRATEGIES)}")
    _out(run_bench(args.strategies or list(STRATEGIES), args.budget, args.seeds, args.proxy_size, args.proxy_epochs,
                   args.proxy_train, args.cache, Path(args.out)))
    return 0



def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    if not argv or argv[0] != "strategies":
        print("usage: python -m bench [--debug] strategies [args]  (compare NNI strategies at equal budget)",
              file=sys.stderr)
        return 0 if argv in (["-h"], ["--help"]) else 2

    def go() -> int:
        p = Parser(prog="python -m bench strategies", description="compare strategies at equal budget on a proxy")
        build(p)
        return run(p.parse_args(argv[1:]))

    return guarded(go, debug)


if __name__ == "__main__":
    sys.exit(main())
