"""SampleScorer: a pure scorer run in a sandboxed child process, with a warm spare.

The child (multiprocessing spawn context) imports everything the scorer needs, caps its address space, and only
then reports ready. Start-up has its own limit (`startup_timeout_s`, counted from the spawn); the per-sample
deadline (`timeout_s`) starts when the sample is sent to a ready child, so it counts the scoring alone. A sample
over its deadline gets its child killed (the only way to stop a runaway pure-Python call, e.g. a backtracking
regex); the spare, started in the background beforehand, takes over at once and a new spare starts behind it,
so the next sample never waits for a fresh interpreter and its imports. Model text is only ever handed to the
scorer function in the child; nothing is evaluated in this process.
"""
from __future__ import annotations

import multiprocessing as mp
import time

from rewards.child_loop import serve_requests
from rewards.errors import RowError


class ScorerStartupError(RuntimeError):
    """The scoring child did not report ready within the start-up limit, or died while starting."""


def _cap_address_space(extra_mb: int | None) -> None:
    """RLIMIT_AS = the size after the imports + extra_mb, so a scorer that balloons gets MemoryError; no cores."""
    import resource
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if extra_mb is None:
        return
    with open("/proc/self/statm") as f:
        current = int(f.read().split()[0]) * resource.getpagesize()
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    limit = current + extra_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit if hard == resource.RLIM_INFINITY else min(limit, hard), hard))


def _serve(conn, fn, options: dict, memory_mb: int | None) -> None:
    """Child loop. `fn` was unpickled by reference before this runs, so its module (and what that imports) is
    loaded before 'ready'. Receives (response, row); answers (status, value) for every message."""
    _cap_address_space(memory_mb)

    def answer(message):
        response, row = message
        try:
            return "ok", fn(response, row, options)
        except RowError as e:          # the task row itself is malformed
            return "bad_row", str(e)
        except MemoryError:
            return "memory", ""
        except Exception as e:         # noqa: BLE001 - any other failure is a counted reason, never a crash
            return "error", f"{type(e).__name__}: {e}"
    serve_requests(conn, answer)


class _Child:
    """One spawned scoring process and the parent's end of its pipe."""

    def __init__(self, ctx, fn, options: dict, memory_mb: int | None):
        self.conn, child_end = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child_end, fn, options, memory_mb), daemon=True)
        self.spawned_at = time.monotonic()
        self.proc.start()
        child_end.close()
        self.startup_s: float | None = None     # spawn -> ready, once ready

    def wait_ready(self, limit_s: float) -> None:
        """Returns once the child is ready; raises ScorerStartupError at `limit_s` after the spawn."""
        if self.startup_s is not None:
            return
        remaining = self.spawned_at + limit_s - time.monotonic()
        try:
            ready = self.conn.poll(max(0.0, remaining)) and self.conn.recv()[0] == "ready"
        except (EOFError, OSError):   # died while starting (an import failed, killed)
            ready = False
        if not ready:
            self.proc.join(1)
            code = self.proc.exitcode
            self.kill()
            why = (f"exited with code {code} while starting" if code is not None else
                   f"was not ready {limit_s:g} s after its spawn")
            raise ScorerStartupError(
                f"scoring worker {why} (reward.startup_timeout_s={limit_s:g}: spawn + imports of the scorer's "
                f"module; raise it on a slow or busy machine)")
        self.startup_s = time.monotonic() - self.spawned_at

    def alive(self) -> bool:
        return self.proc.is_alive()

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(5)
        self.conn.close()


class SampleScorer:
    """Runs `fn(response, row, options)` in a sandboxed child with a per-sample deadline. `fn` must be
    importable (module level). Not thread-safe: one call at a time."""

    def __init__(self, fn, options: dict, timeout_s: float, startup_timeout_s: float = 120.0,
                 memory_mb: int | None = 2048):
        if timeout_s <= 0 or startup_timeout_s <= 0:
            raise ValueError(f"timeouts must be > 0, got sample {timeout_s} s, start-up {startup_timeout_s} s")
        self.fn, self.options, self.memory_mb = fn, options, memory_mb
        self.timeout_s, self.startup_timeout_s = timeout_s, startup_timeout_s
        self._ctx = mp.get_context("spawn")
        self._active: _Child | None = None
        self._spare: _Child | None = None
        self._stats = {"scorer_starts": 0, "scorer_restarts": 0, "scorer_startup_max_s": 0.0}

    # --- children ---
    def _spawn(self) -> _Child:
        self._stats["scorer_starts"] += 1
        return _Child(self._ctx, self.fn, self.options, self.memory_mb)

    def _ready(self, child: _Child) -> None:
        child.wait_ready(self.startup_timeout_s)
        self._stats["scorer_startup_max_s"] = max(self._stats["scorer_startup_max_s"], child.startup_s)

    def _ensure_active(self) -> _Child:
        """A ready active child, with a spare started behind it (not waited for)."""
        if self._active is not None and not self._active.alive():   # died between calls: not this sample's fault
            self._replace_active()
        if self._active is None:
            self._active, self._spare = self._spare or self._spawn(), None
        if self._spare is None:
            self._spare = self._spawn()
        self._ready(self._active)
        return self._active

    def _replace_active(self) -> None:
        """Kill the active child; the spare (if any) takes over on the next call."""
        self._active.kill()
        self._active = None
        self._stats["scorer_restarts"] += 1

    def warm(self) -> None:
        """Start the active child and its spare and wait (start-up limit each) until both are ready."""
        self._ensure_active()
        self._ready(self._spare)

    # --- one sample ---
    def __call__(self, response: str, row: dict) -> tuple[dict | None, str | None]:
        """Returns (scores, None) or (None, reason)."""
        child = self._ensure_active()
        try:
            child.conn.send((response, row))
            if child.conn.poll(self.timeout_s):
                status, value = child.conn.recv()
                if status == "ok":
                    return value, None
                if status == "bad_row":
                    return None, f"bad_row: {value}"
                if status == "error":
                    return None, f"error: {value}"
                reason = status                  # "memory": the child may be in a bad state, replace it
            else:
                reason = "timeout"
        except (EOFError, OSError):              # the child died mid-call (segfault, killed by the kernel)
            reason = "crashed"
        self._replace_active()
        return None, reason

    def stats(self) -> dict:
        return dict(self._stats)

    def close(self) -> None:
        for child in (self._active, self._spare):
            if child is not None:
                child.kill()
        self._active = self._spare = None
