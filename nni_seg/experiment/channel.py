"""The trial's side of NNI, without importing NNI: parameters in, metrics out.

``import nni`` costs about 1.8 s per trial on 2 CPU cores (its serializer imports pandas, its mutables
scipy.stats), a large part of a short trial. A trial of an nnictl experiment only needs NNI 3.0's trial
command channel: a JSON-over-HTTP exchange with the manager at ``$NNI_TRIAL_COMMAND_CHANNEL`` (NNI's own
client: ``nni/runtime/trial_command_channel/v3.py`` + ``runtime/command_channel/http.py``). This module
speaks that exchange with the standard library, for NNI 3.0 only (the version the project pins); any other
version or channel (the legacy file channel, NAS trials) goes through ``import nni`` as before.
"""
from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from typing import Any

NNI_VERSION = "3.0"


def light_channel_url() -> str | None:
    """The HTTP channel's URL when this trial can use the light client, else None (use ``import nni``)."""
    url = os.environ.get("NNI_TRIAL_COMMAND_CHANNEL", "")
    if not url.startswith("http://"):
        return None
    from importlib.metadata import PackageNotFoundError, version

    try:
        return url if version("nni") == NNI_VERSION else None
    except PackageNotFoundError:
        return None


class ChannelClosed(KeyboardInterrupt):
    """NNI's trial channel refused a report: the manager is stopping the experiment (NNI 3.0 closes the
    channel a few seconds before it signals the trials). The trial is canceled, not failed."""

    def __str__(self) -> str:
        return "NNI's trial channel closed: the experiment is stopping"


class HttpTrialChannel:
    """NNI 3.0's trial command channel over HTTP: PUT a command; GET the next one (408: none yet, ask
    again; 410: the channel is closed)."""

    def __init__(self, url: str, timeout: float = 600):
        self.url, self.timeout = url, timeout

    def _send(self, command: dict) -> None:
        req = urllib.request.Request(self.url, data=json.dumps(command).encode(), method="PUT",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                r.read()
        except urllib.error.HTTPError as e:
            if e.code == 410:
                raise ChannelClosed() from None
            raise
        except urllib.error.URLError as e:
            if isinstance(e.reason, ConnectionRefusedError):
                raise ChannelClosed() from None
            raise

    def _receive(self) -> dict | None:
        deadline = time.time() + self.timeout
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(self.url, timeout=60) as r:
                    return json.loads(r.read().decode())
            except urllib.error.HTTPError as e:
                if e.code == 408:
                    continue
                if e.code == 410:
                    return None
                raise OSError(f"NNI's trial channel answered {e.code}: {e.read()[:200]!r}") from None
        raise TimeoutError(f"NNI's trial channel gave no parameters in {self.timeout:.0f}s")

    def receive_parameter(self) -> dict | None:
        self._send({"type": "request_parameter"})
        res = self._receive()
        if res is None:
            return None
        if res.get("type") != "parameter":
            raise OSError(f"NNI's trial channel sent {res.get('type')!r}, not parameters")
        return json.loads(res["parameter"])

    def send_metric(self, kind: str, parameter_id: Any, sequence: int, value: Any) -> None:
        metric = {"parameter_id": parameter_id, "trial_job_id": os.environ.get("NNI_TRIAL_JOB_ID"), "type": kind,
                  "sequence": sequence, "value": json.dumps(value)}
        self._send({"type": "metric", "metric": json.dumps(metric)})


class Trial:
    """What a trial needs of NNI: its ids, its parameters, and a way to report (light client, or NNI's).

    The one reporter of both kinds of trial: an nnictl trial asks for its parameters (:meth:`next_parameter`);
    a NAS trial (``NasExperiment``) is handed its model by NNI, which has fetched the parameters already
    (``nas=True``: NNI's own client, whose record of them is read).
    """

    def __init__(self, nas: bool = False):
        self.url = None if nas else light_channel_url()
        self._nni = None
        self.record: dict | None = None
        if self.url is None:
            import nni
            import nni.trial

            self._nni = nni
            if nas:
                self.record = nni.trial._params or {}
        self.channel = HttpTrialChannel(self.url) if self.url else None
        self.sequence = 0

    @property
    def light(self) -> bool:
        return self._nni is None

    def next_parameter(self) -> dict | None:
        if self._nni is not None:
            params = self._nni.get_next_parameter()
            self.record = self._nni.trial._params
            return params
        self.record = self.channel.receive_parameter()
        return None if self.record is None else self.record["parameters"]

    @property
    def parameter_id(self):
        return (self.record or {}).get("parameter_id")

    @property
    def trial_id(self) -> str:
        return os.environ.get("NNI_TRIAL_JOB_ID", "STANDALONE")

    @property
    def experiment_id(self) -> str:
        return os.environ.get("NNI_EXP_ID", "STANDALONE")

    @property
    def sequence_id(self) -> int:
        return int(os.environ.get("NNI_TRIAL_SEQ_ID", 0))

    def ids(self) -> dict[str, Any]:
        """The ids a trial record keeps (``TrialRecord`` fields)."""
        return {"trial_id": self.trial_id, "experiment_id": self.experiment_id, "parameter_id": self.parameter_id,
                "sequence_id": self.sequence_id}

    def intermediate(self, metrics: dict) -> None:
        if self._nni is not None:
            self._nni.report_intermediate_result(metrics)
            return
        self.channel.send_metric("PERIODICAL", self.parameter_id, self.sequence, metrics)
        self.sequence += 1

    def final(self, metrics: dict) -> None:
        if self._nni is not None:
            self._nni.report_final_result(metrics)
            return
        self.channel.send_metric("FINAL", self.parameter_id, 0, metrics)
