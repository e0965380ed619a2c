"""A picture of an architecture: the encoder going down, the decoder coming up, one box per level with its
cells, ops and width, the downsampling and upsampling on the arrows, the skips across, the context block at
the bottom. ``python -m nni_seg draw top_arch.json`` (also written next to every exported architecture)."""
from __future__ import annotations

from pathlib import Path

from .arch import Arch, active_labels


def _cell_text(arch: Arch, op: str, side: str) -> str:
    op2, join = arch[f"{side}_op2"], arch[f"{side}_join"]
    if op2 == "none":
        return op
    sign = {"serial": "->", "parallel_sum": "+", "parallel_concat": "||"}[join]  # glyphs every font has
    return f"{op} {sign} {op2}"


def describe(arch: Arch) -> dict:
    """What the drawing shows, as data (also for tests): per level the encoder and decoder text."""
    levels = arch["levels"]
    enc = {i: f"L{i}  {arch[f'enc{i}_width']} ch  {arch[f'enc{i}_depth']} x [{_cell_text(arch, arch[f'enc{i}_op'], 'enc')}]"
           for i in range(1, levels + 1)}
    dec = {i: f"L{i}  {arch[f'enc{i}_width']} ch  [{_cell_text(arch, arch[f'dec{i}_op'], 'dec')}]"
           for i in range(1, levels)}
    skips = [i for i in range(1, levels) if arch[f"dec{i}_skip"] == "concat"]
    downs = {i: arch[f"down{i}"] for i in range(2, levels + 1)}
    return {"encoder": enc, "decoder": dec, "skips": skips, "downs": downs, "up": arch["up"],
            "context": arch["context"], "act": arch["act"]}


def draw(arch: Arch, path: str | Path, title: str | None = None, subtitle: str | None = None) -> Path:
    """Write the drawing of ``arch`` as a PNG (atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    from ..plots import save_png

    d = describe(arch)
    levels = arch["levels"]
    fig, ax = plt.subplots(figsize=(10, 1.6 + 1.25 * (levels + 1)))
    ax.set_xlim(-0.2, 10.2)
    ax.set_ylim(-levels - 1.2, 1.2)
    ax.axis("off")
    w, h = 3.6, 0.62

    def box(x, y, text, colour):
        ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.04", fc=colour, ec="0.3"))
        ax.text(x, y, text, ha="center", va="center", fontsize=8.5, family="monospace")

    def arrow(a, b, text="", style="-|>", ls="-", colour="0.25"):
        ax.add_patch(FancyArrowPatch(a, b, arrowstyle=style, mutation_scale=12, lw=1.2, ls=ls, color=colour))
        if text and a[1] == b[1]:  # horizontal: the label above the line
            ax.text((a[0] + b[0]) / 2, a[1] + 0.1, text, fontsize=7.5, color=colour, ha="center")
        elif text:
            ax.text((a[0] + b[0]) / 2 + 0.08, (a[1] + b[1]) / 2, text, fontsize=7.5, color=colour, va="center")

    ex, dx = 2.2, 7.8
    box(ex, 0.75, "input image", "#eeeeee")
    for i in range(1, levels + 1):
        y = -(i - 1)
        box(ex, y, d["encoder"][i], "#cfe2f3")
        arrow((ex, y + 1 - h / 2 - 0.05 if i > 1 else 0.75 - h / 2), (ex, y + h / 2 + 0.02),
              f"{d['downs'][i]} /2" if i > 1 else "")
    deepest = -(levels - 1)
    yc = deepest - 1
    ctx = {"none": "(no context block)", "aspp": "ASPP: 1x1, 3x3 d2/d4/d6, image pool",
           "ppm": "pyramid pooling: /2, /4, global"}[d["context"]]
    box((ex + dx) / 2, yc, ctx, "#fce5cd" if d["context"] != "none" else "#f7f7f7")
    arrow((ex, deepest - h / 2), ((ex + dx) / 2 - w / 2, yc))
    prev = ((ex + dx) / 2 + w / 2, yc)
    for i in range(levels - 1, 0, -1):
        y = -(i - 1)
        box(dx, y, d["decoder"][i], "#d9ead3")
        arrow((prev[0], prev[1]) if i == levels - 1 else (dx, prev[1] + h / 2), (dx, y - h / 2 - 0.02),
              f"{d['up']} x2")
        prev = (dx, y)
        if i in d["skips"]:
            arrow((ex + w / 2, y), (dx - w / 2, y), "concat", ls="--", colour="#3d85c6")
    box(dx, 0.75 if levels > 1 else 0.75, "1x1 head -> class logits", "#eeeeee")
    arrow((dx, h / 2), (dx, 0.75 - h / 2 - 0.02))
    ax.text(5.0, 1.12, title or "architecture", ha="center", fontsize=11, weight="bold")
    import textwrap

    note = (f"cells: a -> b serial, a + b parallel summed, a || b parallel concatenated (1x1); activation {d['act']}. "
            + (subtitle or f"{len(active_labels(arch))} active choices"))
    ax.text(5.0, -levels - 0.85, textwrap.fill(note, 150), ha="center", va="top", fontsize=7.5, color="0.3")
    return save_png(fig, Path(path))
