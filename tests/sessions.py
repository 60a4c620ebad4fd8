"""Process-session helpers for end-to-end tests that start whole Ray clusters in their own session."""
from __future__ import annotations

import os
import signal
import time


def session_pids(sid: int) -> list[int]:
    """Live processes of session `sid` (Linux and macOS: os.getsid works on any pid)."""
    import psutil
    pids = []
    for p in psutil.pids():
        if p == os.getpid():
            continue
        try:
            if os.getsid(p) == sid:
                pids.append(p)
        except (ProcessLookupError, PermissionError, OSError):
            pass
    return pids


def kill_session(sid: int, grace_s: float = 10.0) -> list[int]:
    """SIGTERM every process of session `sid`, SIGKILL what is left after `grace_s`; returns survivors."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        pids = session_pids(sid)
        for p in pids:
            try:
                os.kill(p, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait_s
        while session_pids(sid) and time.monotonic() < deadline:
            time.sleep(0.2)
    return session_pids(sid)
