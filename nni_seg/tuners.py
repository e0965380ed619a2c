"""The tuners that nnictl configs name (``className: nni_seg.tuners.GuidedTuner``): stable names for the
classes of :mod:`nni_seg.experiment.tuners` and :mod:`nni_seg.experiment.rl_tuner`."""
from .experiment.rl_tuner import ReinforceTuner
from .experiment.tuners import GuidedTuner, StartedTuner

__all__ = ["GuidedTuner", "ReinforceTuner", "StartedTuner"]
