"""The fidelity-ladder advisor that nnictl configs name (``className: nni_seg.ladder.LadderAdvisor``): a
stable name for :mod:`nni_seg.experiment.ladder`."""
from .experiment.ladder import LadderAdvisor

__all__ = ["LadderAdvisor"]
