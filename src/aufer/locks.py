"""A lock file that names its holder: ``{"pid": …, "host": …}``, created atomically (``O_EXCL``).

Used by ``aufer predict`` for each output file (:class:`aufer.predict.jobs.OutputLock`) and by training for its run
folder (:class:`aufer.engine.runfolder.RunLock`). A lock left by a process that is no longer alive on this host is
taken over; a lock held by a live process, or by any process on another host (whose liveness cannot be checked
from here), is refused with the holder's pid and host.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

__all__ = ["PidLock", "pid_alive"]


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host (a process of another user counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class PidLock:
    """The lock file ``path``, held between :meth:`acquire` and :meth:`release` (or as a context manager).

    Subclasses say what a refusal means to the user by overriding :meth:`busy_error` (and :meth:`stuck_error`).

    Raises (on acquire):
        Exception: :meth:`busy_error` when another live process holds the lock.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._held = False

    def busy_error(self, holder: str) -> Exception:
        """The error raised when ``holder`` (e.g. ``"pid 12 on host-a"``) holds the lock."""
        return RuntimeError(f"{self.path} is held by {holder}")

    def stuck_error(self) -> Exception:
        """The error raised when the lock could not be taken although its holder looked gone."""
        return RuntimeError(f"could not take the lock {self.path}; delete it if no run is going")

    def holder(self) -> dict | None:
        """The holder recorded in the lock file, or None (no file, or unreadable)."""
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None

    def acquire(self) -> "PidLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname()}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                other = self.holder()
                if other and other.get("host") == me["host"] and not pid_alive(int(other.get("pid", -1))):
                    self.path.unlink(missing_ok=True)  # left by a process that was killed: take it over
                    continue
                who = f"pid {other.get('pid')} on {other.get('host')}" if other else "another process"
                raise self.busy_error(who) from None
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self._held = True
            return self
        raise self.stuck_error()

    def release(self) -> None:
        if self._held:
            self.path.unlink(missing_ok=True)
            self._held = False

    def __enter__(self) -> "PidLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
