"""An ENAS-style RL controller as an NNI tuner (NNI's own PPOTuner needs TensorFlow).

The controller is autoregressive over the choices in search-space order: the logits of choice k are a
per-choice bias plus a learned embedding of the option picked for choice k-1 (so the policy can learn
pairings such as "wide encoder -> no skip"). It is trained by REINFORCE on the final metrics NNI feeds
back, with an exponential-moving-average baseline, advantage normalisation and an entropy bonus.

* Concurrency: each parameter id keeps the actions and their log-prob gradients it was sampled with, so
  results may arrive in any order.
* Failed trials (``trial_end(success=False)`` without a result) are scored ``failure_reward`` ("worst":
  the worst reward seen so far; a number; or "skip" to learn nothing from them).

Use from nnictl::

    tuner:
      className: nni_seg.tuners.ReinforceTuner
      codeDirectory: ..            # any folder; nni_seg must be importable (pip install -e .)
      classArgs: {optimize_mode: maximize, lr: 0.2, entropy_weight: 0.01, seed: 0}
"""
from __future__ import annotations

import logging
import math

import numpy as np
from nni.tuner import Tuner
from nni.utils import extract_scalar_reward

_logger = logging.getLogger(__name__)


class ReinforceTuner(Tuner):
    def __init__(self, optimize_mode: str = "maximize", lr: float = 0.2, entropy_weight: float = 0.01,
                 baseline_decay: float = 0.8, failure_reward: str | float = "worst", seed: int | None = None):
        if optimize_mode not in ("maximize", "minimize"):
            raise ValueError(f"optimize_mode must be maximize or minimize, got {optimize_mode!r}")
        self.sign = 1.0 if optimize_mode == "maximize" else -1.0
        self.lr, self.entropy_weight, self.baseline_decay = lr, entropy_weight, baseline_decay
        self.failure_reward = failure_reward
        self.rng = np.random.default_rng(seed)
        self.labels: list[str] = []
        self.options: list[list] = []
        self.kinds: list[str] = []
        self.bias: list[np.ndarray] = []  # per choice: (n_k,)
        self.cond: list[np.ndarray] = []  # per choice k>0: (n_{k-1}, n_k) from the previous pick
        self.baseline: float | None = None
        self.reward_sq: float = 1.0
        self.worst: float | None = None
        self.pending: dict[int, list[int]] = {}
        self.updates = 0

    # ------------------------------------------------------------------ NNI interface
    def update_search_space(self, search_space: dict) -> None:
        self.labels, self.options, self.kinds = [], [], []
        for label, spec in search_space.items():
            kind = spec.get("_type")
            if kind not in ("choice", "layer_choice"):
                raise ValueError(f"ReinforceTuner supports choice/layer_choice only; {label!r} is {kind!r}")
            values = spec["_value"]
            if any(isinstance(v, dict) for v in values):
                raise ValueError(f"ReinforceTuner does not support nested choices ({label!r})")
            self.labels.append(label)
            self.options.append(list(values))
            self.kinds.append(kind)
        self.bias = [np.zeros(len(o)) for o in self.options]
        self.cond = [np.zeros((len(self.options[k - 1]), len(self.options[k]))) if k else np.zeros((1, len(self.options[0])))
                     for k in range(len(self.options))]

    def generate_parameters(self, parameter_id: int, **kwargs) -> dict:
        actions = self.sample()
        self.pending[parameter_id] = actions
        return self.decode(actions)

    def receive_trial_result(self, parameter_id: int, parameters: dict, value, **kwargs) -> None:
        actions = self.pending.pop(parameter_id, None)
        if actions is None:
            return
        reward = self.sign * extract_scalar_reward(value)
        if not math.isfinite(reward):
            _logger.warning("parameter %s: non-finite reward %s ignored", parameter_id, reward)
            return
        self.worst = reward if self.worst is None else min(self.worst, reward)
        self.update(actions, reward)

    def trial_end(self, parameter_id: int, success: bool, **kwargs) -> None:
        actions = self.pending.pop(parameter_id, None)
        if actions is None or success:
            return  # a successful trial's result was consumed by receive_trial_result
        if self.failure_reward == "skip":
            return
        reward = self.worst if self.failure_reward == "worst" else self.sign * float(self.failure_reward)
        if reward is not None:
            self.update(actions, reward)

    def import_data(self, data: list) -> None:
        pass

    # ------------------------------------------------------------------ policy
    def logits(self, k: int, prev: int | None) -> np.ndarray:
        return self.bias[k] + (self.cond[k][prev] if k and prev is not None else 0.0)

    def probs(self, k: int, prev: int | None) -> np.ndarray:
        z = self.logits(k, prev)
        e = np.exp(z - z.max())
        return e / e.sum()

    def sample(self) -> list[int]:
        actions, prev = [], None
        for k in range(len(self.options)):
            a = int(self.rng.choice(len(self.options[k]), p=self.probs(k, prev)))
            actions.append(a)
            prev = a
        return actions

    def decode(self, actions: list[int]) -> dict:
        out = {}
        for label, kind, opts, a in zip(self.labels, self.kinds, self.options, actions):
            out[label] = {"_value": opts[a], "_idx": a} if kind == "layer_choice" else opts[a]
        return out

    def update(self, actions: list[int], reward: float) -> None:
        if self.baseline is None:
            self.baseline = reward
        adv = reward - self.baseline
        self.reward_sq = self.baseline_decay * self.reward_sq + (1 - self.baseline_decay) * adv * adv
        adv /= math.sqrt(self.reward_sq) + 1e-8
        self.baseline = self.baseline_decay * self.baseline + (1 - self.baseline_decay) * reward
        prev = None
        for k, a in enumerate(actions):
            p = self.probs(k, prev)
            grad = -p
            grad[a] += 1.0  # d log p(a) / d logits
            ent_grad = -p * (np.log(p + 1e-12) + (-(p * np.log(p + 1e-12)).sum()))  # dH/d logits
            step = self.lr * (adv * grad + self.entropy_weight * ent_grad)
            self.bias[k] += step
            if k:
                self.cond[k][prev] += step
            prev = a
        self.updates += 1

    def most_likely(self) -> dict:
        """The controller's current choice (greedy decoding): what ENAS exports."""
        actions, prev = [], None
        for k in range(len(self.options)):
            a = int(np.argmax(self.logits(k, prev)))
            actions.append(a)
            prev = a
        return self.decode(actions)
