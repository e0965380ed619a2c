"""``python -m nni_seg.trial``: the trial command that nnictl configs run (a stable name; the code is
:mod:`nni_seg.experiment.trial`)."""
import sys

from .experiment.trial import launch, main

__all__ = ["launch", "main"]

if __name__ == "__main__":
    sys.exit(launch())
