"""A checkpoint as ONNX, with a parity check against PyTorch at several sizes."""
from __future__ import annotations

import dataclasses

from pathlib import Path

import torch

from ..errors import UserError
from ..files import atomic_path, check_output
from ..training.trainer import Normalizer

from .checkpoint import load_checkpoint


@dataclasses.dataclass
class OnnxExport:
    """An ONNX file written by :func:`export_onnx` and its parity with PyTorch."""
    path: Path
    max_abs_diff: float
    argmax_agreement: float
    opset: int
    input_shape: list[int]
    checked_sizes: list[list[int]]
    bytes: int


def export_onnx(ckpt: str | Path, out: Path, opset: int = 17, atol: float = 1e-3, force: bool = False) -> OnnxExport:
    """Export a checkpoint to ONNX and check it against PyTorch with onnxruntime.

    The graph includes the normaliser: input ``image`` (N, C, H, W) float32 pixel values in [0, 255]
    (batch, height and width dynamic), output ``logits`` (N, classes, H, W). Parity: max abs difference
    of the logits on random images at the trained size, batch 2, and at two other sizes (odd ones too: the
    graph must really be dynamic); above ``atol`` anywhere raises and leaves no ONNX file behind.
    """
    import warnings

    import numpy as np

    try:
        import onnxruntime as ort
    except ImportError:
        raise UserError("onnx export needs onnx and onnxruntime: pip install -r requirements-deploy.txt") from None
    out = check_output(out, force=force, what="ONNX file")
    model, meta = load_checkpoint(ckpt)
    net = torch.nn.Sequential(Normalizer(meta.mean, meta.std), model).eval()
    x = torch.randint(0, 256, (2, meta.in_channels, *meta.size), generator=torch.Generator().manual_seed(0)).float()
    with atomic_path(out) as tmp:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter: stable for plain CNNs
            torch.onnx.export(net, (x,), tmp, dynamo=False, opset_version=opset, input_names=["image"],
                              output_names=["logits"], dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"},
                                                                     "logits": {0: "batch", 2: "height", 3: "width"}})
        sess = ort.InferenceSession(tmp, providers=["CPUExecutionProvider"])
        h, w = meta.size
        low = 2 ** (model.n_levels - 1)
        sizes = [(h, w), (max(low, h // 2 + 1), max(low, w // 2 + 3)), (h + low + 1, w + 1)]
        diffs, agree = [], 1.0
        for i, (sh, sw) in enumerate(sizes):
            xi = x if i == 0 else torch.randint(0, 256, (1, meta.in_channels, sh, sw),
                                                generator=torch.Generator().manual_seed(i)).float()
            with torch.no_grad():
                ref = net(xi).numpy()
            try:
                got = sess.run(["logits"], {"image": xi.numpy()})[0]
            except Exception as e:  # onnxruntime's own errors: a graph fixed to the traced size
                raise UserError(f"ONNX export of {ckpt} is not dynamic: onnxruntime fails at {sh}x{sw} "
                                f"({' '.join(str(e).split())[:160]}); nothing written") from None
            if got.shape != ref.shape:
                raise UserError(f"ONNX export of {ckpt} is not dynamic: {sh}x{sw} gives logits {got.shape[2]}x"
                                f"{got.shape[3]}, PyTorch {ref.shape[2]}x{ref.shape[3]}; nothing written")
            diffs.append(float(np.abs(got - ref).max()))
            if i == 0:
                agree = float((got.argmax(1) == ref.argmax(1)).mean())
            if not diffs[-1] <= atol:
                raise UserError(f"ONNX parity check failed for {ckpt} at {sh}x{sw}: max abs diff {diffs[-1]:.3g} > "
                                f"{atol}; nothing written")
    return OnnxExport(path=out, max_abs_diff=max(diffs), argmax_agreement=agree, opset=opset,
                      input_shape=list(x.shape), checked_sizes=[list(s) for s in sizes], bytes=out.stat().st_size)
