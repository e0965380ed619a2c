"""Writing files safely: atomically, with the user's permissions, never over something by surprise.

Every file nni_seg writes goes through :func:`atomic_path`: a temp file beside the target, renamed over
it only when complete, so a reader (or a crash) never sees half a file and an old file survives a failed
write. The result gets the permissions a plain ``open()`` would give (the umask), not the temp file's
0600, and temp files orphaned by an earlier killed write are removed by the next successful one.
:func:`check_output` refuses to replace an existing output unless asked to.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

from .errors import UserError

_TMP_MARK = ".nni_seg-tmp"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _remove_orphans(path: Path) -> None:
    """Temp files of ``path`` left by writes that were killed (one writer per file: none is live)."""
    for p in path.parent.glob(f".{path.name}.*{_TMP_MARK}*"):
        try:
            p.unlink()
        except OSError:
            pass


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[str]:
    """Yield a temp file name beside ``path`` (ending in ``suffix``, for writers that insist on one);
    on success it is renamed to ``path`` with the umask's permissions, on error removed."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"output {path} is a folder; give a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise UserError(f"output {path}: {path.parent} is not a folder") from None
    except PermissionError as e:
        raise UserError(f"output {path}: cannot create its folder ({e.strerror})") from None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=_TMP_MARK + suffix)
    except PermissionError as e:
        raise UserError(f"output {path}: cannot write in {path.parent} ({e.strerror})") from None
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
        _remove_orphans(path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | os.PathLike, obj) -> Path:
    import json

    return atomic_write_text(path, json.dumps(obj, indent=2, default=str) + "\n")


def check_output(path: str | os.PathLike, *, force: bool = False, what: str = "output", flag: str = "--force") -> Path:
    """``path`` as an output file: refused when it is a folder, or exists and ``force`` is not set."""
    p = Path(path)
    if p.is_dir():
        raise UserError(f"{what} {p} is a folder; give a file name")
    if p.exists() and not force:
        raise UserError(f"{what} {p} exists; not replaced without {flag}")
    if p.parent.exists() and not p.parent.is_dir():
        raise UserError(f"{what} {p}: {p.parent} is not a folder")
    here = next((q for q in (p.parent, *p.parent.parents) if q.exists()), None)  # the folder it would be made in
    if here is not None and here.is_dir() and not os.access(here, os.W_OK | os.X_OK):
        raise UserError(f"{what} {p}: {here} is not writable; choose a writable place")
    return p


def output_folder(path: str | os.PathLike, outputs: Iterable[str], *, force: bool = False, what: str = "outputs",
                  flag: str = "--out", clear: bool = True) -> Path:
    """``path`` as a folder for ``outputs`` (names in it): refused when it is a file, or holds any of them
    and ``force`` is not set; with ``force`` and ``clear`` those are removed first (other files stay).
    Returns the folder, created."""
    import shutil

    out = Path(path)
    if out.exists() and not out.is_dir():
        raise UserError(f"{flag} {out} is a file; give a folder")
    present = [name for name in outputs if (out / name).exists() or (out / name).is_symlink()]
    if present and not force:
        raise UserError(f"{out} holds {what} ({', '.join(present)}); choose another {flag} or pass --force to "
                        f"replace them")
    for name in present if clear else ():
        p = out / name
        shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
    out.mkdir(parents=True, exist_ok=True)
    return out


@contextlib.contextmanager
def locked(path: str | os.PathLike) -> Iterator[None]:
    """An exclusive lock on ``<path>.lock`` (processes that append to one file, or start one server)."""
    import fcntl

    lock = Path(path).with_suffix(".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
