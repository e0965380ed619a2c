"""How much can screening short trials buy on the CamVid proxy? Read from the equal-compute bench's cache.

    python -m bench.strategy_headroom bench/results/strategies_camvid/proxy_cache.json

Prints (1) how well a 1-epoch training ranks architectures like the 3-epoch proxy (Kendall's tau over the
architectures trained at both budgets, which is what Hyperband's first rung decides on), and the
epoch-1 / epoch-2 val Dice of the 3-epoch curves against their last (what Medianstop and Curvefitting
decide on); (2) a resampling of the cached architectures: the mean incumbent after each 3 trial-epochs of
random search and of successive halving (n architectures for 1 epoch, the best k of them for 3), drawn
from the architectures trained at both budgets, so both see the same pool. No training.
"""
from __future__ import annotations

import json
import random
import statistics
import sys

from scipy.stats import kendalltau, spearmanr

from bench.strategies import read_cache


def pools(path: str) -> tuple[list[tuple[float, float]], list[list[float]]]:
    by: dict[str, dict[int, list[float]]] = {}
    for e in read_cache(path)[1]:
        if not e.rejected:
            by.setdefault(json.dumps(e.arch, sort_keys=True), {})[e.epochs] = e.curve
    both = [(v[1][-1], v[3][-1]) for v in by.values() if 1 in v and 3 in v]
    curves = [v[3] for v in by.values() if 3 in v and len(v[3]) == 3]
    return both, curves


def simulate(pool, n: int | None, k: int, compute: int = 24, reps: int = 4000, seed: int = 0) -> list[float]:
    """Mean incumbent (3-epoch score) after 3, 6, ... ``compute`` trial-epochs; ``n`` None: random search."""
    rng = random.Random(seed)
    grid = list(range(3, compute + 1, 3))
    sums = [0.0] * len(grid)
    for _ in range(reps):
        points, spent, best = [], 0, 0.0
        while spent < compute:
            if n is None:
                spent += 3
                best = max(best, rng.choice(pool)[1])
                points.append((spent, best))
                continue
            drawn = [rng.choice(pool) for _ in range(n)]
            spent += n
            for one, three in sorted(drawn, key=lambda x: -x[0])[:k]:
                spent += 3
                best = max(best, three)
                points.append((spent, best))
        for i, c in enumerate(grid):
            sums[i] += max([b for s, b in points if s <= c], default=0.0)
    return [s / reps for s in sums]


def main(path: str) -> None:
    both, curves = pools(path)
    one, three = [b[0] for b in both], [b[1] for b in both]
    print(f"architectures trained for 1 and for 3 epochs: {len(both)}")
    print(f"  1-epoch training vs 3-epoch proxy: Kendall tau {kendalltau(one, three)[0]:.2f}, "
          f"Spearman rho {spearmanr(one, three)[0]:.2f}")
    last = [c[2] for c in curves]
    print(f"3-epoch curves: {len(curves)}; epoch 1 vs epoch 3: tau {kendalltau([c[0] for c in curves], last)[0]:.2f}; "
          f"epoch 2 vs epoch 3: tau {kendalltau([c[1] for c in curves], last)[0]:.2f}")
    print("\nmean incumbent (3-epoch val Dice) by compute, resampled from those architectures:")
    grid = list(range(3, 25, 3))
    print("| schedule | " + " | ".join(str(c) for c in grid) + " |")
    print("|---|" + "---|" * len(grid))
    for name, n, k in (("random", None, 1), ("halving 3 -> 1", 3, 1), ("halving 4 -> 1", 4, 1),
                       ("halving 6 -> 2", 6, 2), ("halving 9 -> 3", 9, 3)):
        means = simulate(both, n, k)
        print(f"| {name} | " + " | ".join(f"{m:.3f}" if m else "-" for m in means) + " |")
    print(f"\n(mean 3-epoch score of the pool: {statistics.mean(three):.3f})")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "bench/results/strategies_camvid/proxy_cache.json")
