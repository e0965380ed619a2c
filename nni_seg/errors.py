"""The errors a user can cause, and the one place that turns any error into one line and an exit code.

``UserError`` (bad input: a flag, a config file, a data file, an architecture, a checkpoint) is printed
as ``error: <message>`` and exits 2, with nothing started and nothing written. ``RunFailed`` (the work
started but could not finish: a dead experiment, a failed search) exits 1. Anything else is a bug: one
line naming the exception, exit 1, and a hint to rerun with ``--debug`` for the traceback.
"""
from __future__ import annotations

import errno
import sys
import traceback
from typing import Callable


class UserError(Exception):
    """Bad input; the message names the file, flag or value at fault."""


class ConfigError(UserError):
    """A setting out of its range or of the wrong type (flag, YAML, or trial parameter)."""


class DataError(UserError):
    """Bad dataset input; the message names the file or value."""


class RecordError(UserError):
    """A file we wrote (trial record, top architecture, checkpoint) that cannot be read as one."""


class RunFailed(Exception):
    """The work started but cannot finish (dead experiment, failed search); the message says why."""


def one_line(e: BaseException) -> str:
    text = str(e.args[0]) if len(e.args) == 1 else str(e)
    return " ".join(text.split()) if "\n" not in text.strip() else text.strip()


def guarded(run: Callable[[], int], debug: bool = False, stderr=None) -> int:
    """Run a command; turn what it raises into ``error: ...`` on stderr and an exit code."""
    stderr = stderr or sys.stderr
    try:
        return run()
    except UserError as e:
        print(f"error: {one_line(e)}", file=stderr)
        return 2
    except RunFailed as e:
        print(f"error: {one_line(e)}", file=stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=stderr)
        return 130
    except OSError as e:
        if e.errno in _NOT_WRITABLE:  # a read-only or foreign output folder: the user's to change
            print(f"error: {e.filename or 'a file'}: {e.strerror}; choose a writable place", file=stderr)
            return 2
        if e.errno == errno.ENOSPC:
            print(f"error: {e.filename or 'a file'}: no space left on the device (what was written before is "
                  f"kept)", file=stderr)
            return 1
        return _unexpected(e, debug, stderr)
    except Exception as e:  # a bug: still one line, the traceback on request
        return _unexpected(e, debug, stderr)


_NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)


def _unexpected(e: BaseException, debug: bool, stderr) -> int:
    if debug:
        traceback.print_exc(file=stderr)
    msg = one_line(e).splitlines()[0] if str(e) else ""
    print(f"error: unexpected {type(e).__name__}{': ' + msg if msg else ''} "
          f"(rerun with --debug for the traceback)", file=stderr)
    return 1
