"""Test-only fault injection, kept out of the library.

With this folder on ``PYTHONPATH``, every Python process it starts (a trial under nnictl, the fork server,
a standalone trial) wraps the trainer's ``fit``: when ``NNI_SEG_FAULTS`` (``seq:kind`` items,
comma-separated; ``*`` matches any trial) names the trial's NNI sequence id (``standalone`` outside NNI),
the first training forward pass fails the way ``kind`` does in real life: ``nan`` (the loss diverges),
``oom`` (CUDA out of memory), ``raise`` (any exception), ``sigkill`` (what the kernel's OOM killer does).
The decision is made when ``fit`` is called, from the environment the trial has then (the fork server
hands each trial its own).
"""
import os
import signal

FAULTS = ("nan", "oom", "raise", "sigkill")


def injected_fault(sequence_id, spec: str | None = None) -> str | None:
    """The fault ``spec`` (default: ``$NNI_SEG_FAULTS``) asks for trial ``sequence_id``, or None."""
    spec = os.environ.get("NNI_SEG_FAULTS", "") if spec is None else spec
    for item in filter(None, (i.strip() for i in spec.split(","))):
        seq, _, kind = item.partition(":")
        if kind not in FAULTS:
            raise ValueError(f"NNI_SEG_FAULTS item {item!r}: fault must be one of {', '.join(FAULTS)}")
        if seq == "*" or seq == str(sequence_id):
            return kind
    return None


def inject_fault(model, kind: str) -> None:
    """Make the model's first training forward pass fail the way ``kind`` does."""
    import torch

    def hook(module, inputs, output):
        if not module.training:
            return None
        if kind == "nan":
            return output * float("nan")  # the loss becomes NaN: the trainer's divergence check fires
        if kind == "sigkill":  # no handler runs, no record is written
            os.kill(os.getpid(), signal.SIGKILL)
        if kind == "oom":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (injected by NNI_SEG_FAULTS)")
        raise RuntimeError("injected failure (NNI_SEG_FAULTS)")

    model.register_forward_hook(hook)


def install() -> None:
    """Wrap ``nni_seg.training.trainer.fit`` (the trial imports it when it trains)."""
    from nni_seg.training import trainer

    if getattr(trainer.fit, "faulty", False):
        return
    original = trainer.fit

    def fit(model, data, cfg, **kwargs):
        seq = os.environ.get("NNI_TRIAL_SEQ_ID") if os.environ.get("NNI_PLATFORM") else "standalone"
        kind = injected_fault(seq)
        if kind:
            inject_fault(model, kind)
        return original(model, data, cfg, **kwargs)

    fit.faulty = True
    trainer.fit = fit


if os.environ.get("NNI_SEG_FAULTS"):
    install()
