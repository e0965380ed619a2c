"""Trials that start in milliseconds: a server with PyTorch already imported forks each trial.

``import torch`` takes 2-3 s on 2 CPU cores, the largest part of what a short trial spends outside training.
Under NNI (``NNI_PLATFORM`` set; ``NNI_SEG_FORKSERVER=0`` turns it off, ``=1`` on everywhere) the trial
process that NNI starts (``python -m nni_seg.trial``, which imports no torch) hands its command line,
environment, working folder and standard streams to a server on this machine; the server forks a copy of
itself, with torch and our modules already imported, and that copy runs the trial. The server is started
by the first trial that finds none, one per experiment, interpreter and version of the code (a key over
all three); it exits with its experiment's NNI manager (``nnictl stop`` leaves no process behind), and
after ``IDLE_SECONDS`` without a trial.

NNI keeps seeing the process it started: it waits for the trial, forwards SIGINT / SIGTERM to it (how NNI
stops trials), exits with the trial's exit code or dies by the trial's signal; if it is killed, the trial is
killed too. A trial killed before it could write the end of its record (SIGKILL: NNI's answer to a stop
that takes too long; a crash) gets that end from its supervisor, so no record says RUNNING for a dead trial.
Anything that goes wrong before the trial starts falls back to running it in-process.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from ..files import locked

IDLE_SECONDS = 120.0
START_TIMEOUT = 90.0
MAX_SOCKET_PATH = 107  # bytes of an AF_UNIX path on Linux (sun_path is 108 with its NUL)
_RECORD_FD: int | None = None  # in a forked trial: the pipe on which it tells its supervisor where its record is
PRELOAD = ("torch", "numpy", "nni_seg.data", "nni_seg.space.net", "nni_seg.space.cost", "nni_seg.training.trainer",
           "nni_seg.training.metrics", "nni_seg.training.losses", "nni_seg.experiment.trial")


def enabled() -> bool:
    flag = os.environ.get("NNI_SEG_FORKSERVER")
    if flag is not None:
        return flag not in ("0", "", "false", "no")
    return bool(os.environ.get("NNI_PLATFORM"))


def socket_dir() -> Path:
    return Path(os.environ.get("NNI_SEG_FORKSERVER_DIR") or f"/tmp/nni_seg-forkserver-{os.getuid()}")


def server_key() -> str:
    """The interpreter, the import path and every source file of nni_seg (name, size, mtime): a server
    never runs code other than the trial's own."""
    pkg = Path(__file__).resolve().parents[1]  # the nni_seg package: any of its files changed is another server
    h = hashlib.sha256(f"{sys.executable}\n{pkg}\n{os.environ.get('PYTHONPATH', '')}\n"
                       f"{os.environ.get('NNI_EXP_ID', '')}\n".encode())
    for f in sorted(pkg.rglob("*.py")):
        st = f.stat()
        h.update(f"{f.relative_to(pkg)} {st.st_size} {st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------- messages
def _send(conn: socket.socket, obj: dict, fds: list[int] | None = None) -> None:
    data = json.dumps(obj).encode() + b"\n"
    if fds:
        socket.send_fds(conn, [data], fds)
    else:
        conn.sendall(data)


def _recv(conn: socket.socket, with_fds: int = 0) -> tuple[dict | None, list[int]]:
    if with_fds:
        data, fds, _, _ = socket.recv_fds(conn, 1 << 20, with_fds)
    else:
        data, fds = conn.recv(1 << 20), []
    while data and not data.endswith(b"\n"):
        more = conn.recv(1 << 20)
        if not more:
            break
        data += more
    return (json.loads(data) if data.strip() else None), list(fds)


# --------------------------------------------------------------------------- client
def _connect(path: Path) -> socket.socket | None:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(str(path))
        return s
    except OSError:
        s.close()
        return None


def _server(path: Path) -> socket.socket | None:
    """A connection to the server of ``path``, starting one if none answers."""
    conn = _connect(path)
    if conn is not None:
        return conn
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with locked(path):
        conn = _connect(path)  # another trial started it meanwhile
        if conn is not None:
            return conn
        path.unlink(missing_ok=True)  # a dead server's socket
        with open(path.with_suffix(".log"), "ab") as log:  # the server's own errors, if it has any
            subprocess.Popen([sys.executable, "-m", "nni_seg.experiment.forkserver", str(path)], start_new_session=True,
                             stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        deadline = time.time() + START_TIMEOUT
        while time.time() < deadline:
            time.sleep(0.05)
            conn = _connect(path)
            if conn is not None:
                return conn
    return None


def run(target: str, argv: list[str], started: float) -> int | None:
    """Run ``target(argv)`` (``"module:function"``, e.g. ``nni_seg.experiment.trial:main``) in a forked copy of the
    server and return its exit code (or die by its signal); None when no server can be used (the caller then
    runs it itself)."""
    path = socket_dir() / f"{server_key()}.sock"
    longest = len(os.fsencode(path.with_name(f".{path.name}.{'9' * 7}")))  # the server binds a temp name first
    if longest > MAX_SOCKET_PATH:
        print(f"warning: fork server off: its socket path would be {longest} bytes, the OS allows "
              f"{MAX_SOCKET_PATH}; set NNI_SEG_FORKSERVER_DIR to a shorter folder", file=sys.stderr, flush=True)
        return None
    try:
        conn = _server(path)
        if conn is None:
            return None
        _send(conn, {"target": target, "argv": argv, "env": dict(os.environ), "cwd": os.getcwd(),
                     "started": started}, [0, 1, 2])
        hello, _ = _recv(conn)
    except OSError:
        return None
    if not hello or "pid" not in hello:
        return None
    child = hello["pid"]

    def forward(signum, frame):
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        status, _ = _recv(conn)
    finally:  # the child is done: a later signal is this process's own again
        conn.close()
        for s, h in previous.items():
            signal.signal(s, h)
    if status is None:
        print("error: trial failed: the fork server's trial process vanished", file=sys.stderr)
        return 1
    fault = killed_reason(status["signal"], status.get("asked_to_stop", False)) if "signal" in status else None
    if fault is not None:  # not a stop: NNI must see a failure (a signal death reads as USER_CANCELED there)
        print(f"error: trial failed: {fault}", file=sys.stderr, flush=True)
        return 128 + status["signal"]
    if "signal" in status:  # die as the trial died: NNI reads a signal death as EARLY_STOPPED / USER_CANCELED
        sys.stdout.flush()
        if status["signal"] not in (signal.SIGKILL, signal.SIGSTOP):  # those cannot be handled (nor reset)
            signal.signal(status["signal"], signal.SIG_DFL)
        os.kill(os.getpid(), status["signal"])
        return 128 + status["signal"]
    return int(status["exit"])


# --------------------------------------------------------------------------- server
def serve(path: Path) -> None:
    """Import what trials need, then fork a supervisor per connection until idle."""
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # supervisors are reaped by the kernel
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(tmp))
    listener.listen(64)
    os.replace(tmp, path)  # appears only when ready to accept
    mine = os.stat(path).st_ino
    listener.settimeout(1.0)
    manager, last = None, time.time()
    try:
        while True:
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                if time.time() - last > IDLE_SECONDS or (manager is not None and not _alive(manager)):
                    return
                continue
            last = time.time()
            manager = manager or _nni_manager_of(conn)
            if os.fork() == 0:
                listener.close()
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                try:
                    _supervise(conn)
                finally:
                    os._exit(0)
            conn.close()
    finally:
        with contextlib.suppress(OSError):
            if os.stat(path).st_ino == mine:  # not a newer server's socket
                path.unlink()


def _nni_manager_of(conn: socket.socket) -> int | None:
    """The pid of the NNI manager (node ... main.js) that started the client of ``conn``, if any."""
    import struct

    import psutil

    try:
        pid, _, _ = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
        for p in psutil.Process(pid).parents():
            if "main.js" in " ".join(p.cmdline()) and "node" in p.name():
                return p.pid
    except (OSError, psutil.Error):
        pass
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _supervise(conn: socket.socket) -> None:
    """Fork the trial with the client's streams, folder and environment; report how it ended; kill it if
    the client goes away."""
    req, fds = _recv(conn, with_fds=3)
    told_r, told_w = os.pipe()  # the trial writes its record's path here (tell_record); kept by the kernel if it dies
    pid = os.fork()
    if pid == 0:
        os.close(told_r)
        _become_trial(req, fds, conn, told_w)
    os.close(told_w)
    for fd in fds:
        os.close(fd)
    _send(conn, {"pid": pid})
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            if os.WIFSIGNALED(status):
                # before NNI hears of the end, so the record is final by then
                sig, (told, asked) = os.WTERMSIG(status), _told(told_r)
                _settle(req, sig, told, asked)
                _send(conn, {"signal": sig, "asked_to_stop": asked})
            else:
                _send(conn, {"exit": os.WEXITSTATUS(status)})
            return
        ready, _, _ = select.select([conn], [], [], 0.2)
        if ready and not conn.recv(1):  # the client died (e.g. SIGKILL): its trial goes too
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            _settle(req, signal.SIGKILL, _told(told_r)[0], asked=True)  # its client is gone: a stop, not a fault
            return


def tell_record(path: Path) -> None:
    """Called by a forked trial once its record exists: its supervisor settles that file if the trial is killed."""
    if _RECORD_FD is None:
        return
    with contextlib.suppress(OSError):
        os.write(_RECORD_FD, (str(Path(path).resolve()) + "\n").encode())


STOP_LINE = "!stop"  # what a trial writes to its pipe when told to stop (SIGINT / SIGTERM)


def tell_stop() -> None:
    """Called by a forked trial's SIGINT / SIGTERM handler: a SIGKILL that follows is NNI's escalation of that
    stop, while a SIGKILL with no stop before it is most likely the kernel's out-of-memory killer."""
    if _RECORD_FD is None:
        return
    with contextlib.suppress(OSError):
        os.write(_RECORD_FD, f"{STOP_LINE}\n".encode())


def _told(fd: int) -> tuple[Path | None, bool]:
    """The last record path the trial wrote to its pipe (None if it wrote none), and whether it was told to stop."""
    os.set_blocking(fd, False)  # a worker the trial forked may still hold the write end open
    data = b""
    with contextlib.suppress(BlockingIOError, OSError):
        while chunk := os.read(fd, 65536):
            data += chunk
    os.close(fd)
    lines = data.decode(errors="replace").split("\n")
    complete = [line for line in lines[:-1] if line]  # a line cut by the kill is not a path
    paths = [line for line in complete if line != STOP_LINE]
    return (Path(paths[-1]) if paths else None), STOP_LINE in complete


def _record_path(req: dict) -> Path | None:
    """Where a trial that told nothing writes its record: ``--out`` on its command line, else
    ``$NNI_OUTPUT_DIR`` (a trial killed before it wrote its record leaves nothing to settle anyway)."""
    from ..config.schema import RECORD_NAME

    argv, out = req["argv"], None
    for i, arg in enumerate(argv):
        if arg == "--out" and i + 1 < len(argv):
            out = argv[i + 1]
        elif arg.startswith("--out="):
            out = arg.split("=", 1)[1]
    out = out or req["env"].get("NNI_OUTPUT_DIR")
    return Path(req["cwd"], out) / RECORD_NAME if out else None


def killed_reason(signum: int, asked_to_stop: bool) -> str | None:
    """Why a trial died by ``signum`` when that was not a stop: None for a stop (NNI's SIGINT / SIGTERM, or the
    SIGKILL NNI sends when a stopped trial does not exit in time)."""
    if signum in (signal.SIGINT, signal.SIGTERM) or (signum == signal.SIGKILL and asked_to_stop):
        return None
    name = signal.Signals(signum).name if signum in signal.valid_signals() else f"signal {signum}"
    if signum == signal.SIGKILL:
        return (f"killed by {name} (signal {signum}) with no stop asked: most likely the kernel's out-of-memory "
                f"killer (see `dmesg`); give the trial less to hold (batch size, image size, width)")
    return f"the trial process died by {name} (signal {signum})"


def _settle(req: dict, signum: int, told: Path | None = None, asked: bool = False) -> None:
    """A trial killed by a signal it could not handle (SIGKILL: NNI escalates a stop that is slow to
    finish, or the OOM killer; a crash) has left its record RUNNING: give it its end, so no record claims a
    dead trial runs."""
    from .records import settle_unfinished
    from ..config.schema import Status

    path = told or _record_path(req)
    if path is None or not path.is_file():
        return
    name = signal.Signals(signum).name if signum in signal.valid_signals() else f"signal {signum}"
    fault = killed_reason(signum, asked)
    stopped = fault is None
    reason = (f"canceled: killed by {name} before it could write its own end (NNI kills a trial that does not "
              f"exit soon after being told to stop)" if stopped else fault)
    try:
        settle_unfinished(path, Status.CANCELED if stopped else Status.FAILED, reason)
    except Exception as e:  # the supervisor must still report the end to its client
        print(f"nni_seg fork server: could not settle {path}: {e}", file=sys.stderr)


def _become_trial(req: dict, fds: list[int], conn: socket.socket, told_w: int) -> None:
    global _RECORD_FD
    _RECORD_FD = told_w  # not inheritable: a program the trial runs cannot write to it
    conn.close()
    for target, fd in zip((0, 1, 2), fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(req["cwd"])
    os.environ.clear()
    os.environ.update(req["env"])
    os.environ["NNI_SEG_STARTED"] = str(req["started"])
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD):
        signal.signal(s, signal.SIG_DFL)
    sys.stdout.reconfigure(line_buffering=True)
    sys.stderr.reconfigure(line_buffering=True)
    module, func = req["target"].split(":")
    sys.argv = [module, *req["argv"]]
    code = 1
    try:
        import importlib

        code = getattr(importlib.import_module(module), func)(req["argv"])
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    # run as the package's module, not __main__: a trial's tell_record must see the _RECORD_FD its fork set
    from nni_seg.experiment import forkserver as _package_module

    _package_module.serve(Path(sys.argv[1]))
