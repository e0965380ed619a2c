"""The winner, end to end: ``retrain`` an architecture with checkpoints, then ``evaluate``, ``predict``
and ``export_onnx`` with a checkpoint. Library functions; the commands are in :mod:`nni_seg.cli`.

A checkpoint folder holds ``meta.json`` (:class:`~nni_seg.config.schema.CheckpointMeta`: architecture, classes,
normalisation, settings, best scores) and plain state dicts: ``best.pt`` (weights with the best val
Dice) and ``last.pt`` (weights, optimizer, scheduler and history of the last epoch, for ``resume``),
loaded with ``torch.load(weights_only=True)``: no arbitrary object is ever unpickled. None of this
needs NNI.
"""
from .checkpoint import CHECKPOINT_FILES, atomic_torch_save, check_classes, load_checkpoint, Retrained, retrain
from .evaluate import EvalReport, evaluate, evaluate_model, table
from .onnx import export_onnx
from .predict import predict

__all__ = ["retrain", "Retrained", "load_checkpoint", "check_classes", "atomic_torch_save", "CHECKPOINT_FILES",
           "evaluate", "evaluate_model", "EvalReport", "table", "predict", "export_onnx"]
