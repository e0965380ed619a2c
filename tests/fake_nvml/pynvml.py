"""A stand-in for NVIDIA's ``pynvml`` that reports ``NNI_SEG_FAKE_GPUS`` idle GPUs (default 1).

Put this folder first on PYTHONPATH of ``nnictl`` and NNI's GPU probe
(``python -m nni.tools.nni_manager_scripts.collect_gpu_info``) sees that many GPUs, so NNI's local
GPU scheduler can be tested end to end on a machine without one. Only what the probe calls exists.
"""
import os
from types import SimpleNamespace


class NVMLError(Exception):
    pass


def _count() -> int:
    return int(os.environ.get("NNI_SEG_FAKE_GPUS", "1"))


def nvmlInit():
    if _count() < 0:
        raise NVMLError("NVML Shared Library Not Found (fake)")


def nvmlShutdown():
    pass


def nvmlDeviceGetCount():
    return _count()


def nvmlSystemGetDriverVersion():
    return "0.0-fake"


def nvmlSystemGetCudaDriverVersion_v2():
    return 12000


def nvmlDeviceGetHandleByIndex(index):
    if not 0 <= index < _count():
        raise NVMLError(f"invalid GPU index {index}")
    return index


def nvmlDeviceGetName(handle):
    return f"Fake GPU {handle}"


def nvmlDeviceGetNumGpuCores(handle):
    return 1024


def nvmlDeviceGetMemoryInfo(handle):
    return SimpleNamespace(total=16 << 30, free=16 << 30, used=0)


def nvmlDeviceGetUtilizationRates(handle):
    return SimpleNamespace(gpu=0, memory=0)


def nvmlDeviceGetComputeRunningProcesses_v3(handle):
    return []


def nvmlDeviceGetGraphicsRunningProcesses_v3(handle):
    return []


def nvmlSystemGetProcessName(pid):
    return ""
