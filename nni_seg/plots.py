"""Writing matplotlib figures: headless, atomically, closed after."""
from __future__ import annotations

import io
from pathlib import Path

from .files import atomic_write_bytes


def save_png(fig, path: Path) -> Path:
    """Write a matplotlib figure as PNG atomically and close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())
