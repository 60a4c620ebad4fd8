"""GroundedPRM tool verifier: SymPy checks of a step's equality claims, run in a sandboxed child process.

The child (multiprocessing spawn context, one long-lived worker) runs with RLIMIT_AS and a per-call RLIMIT_CPU,
its cwd in a fresh temporary directory and proxy variables removed from its environment. The parent enforces a
wall-clock deadline: on overrun or death the child is killed and replaced, and the call answers not_checkable
with reason timeout / crashed / memory, so the next call works. Model text is parsed by the safe parser in
`rewards/prm/parse.py`, never evaluated (see `rewards/prm/check.py` for the checking rule).
"""
from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time

from rewards.child_loop import serve_requests
from rewards.prm.check import StepVerdict, answers_equivalent, verify_step

START_TIMEOUT_S = 60.0           # spawning + importing sympy is not the claim's time


def _limit_child(memory_mb: int):
    """Address-space cap, no core files, proxies gone, cwd in a throwaway directory."""
    import resource
    import tempfile
    limit = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    for key in [k for k in os.environ if "proxy" in k.lower()]:
        del os.environ[key]
    workdir = tempfile.TemporaryDirectory(prefix="prm-verify-")
    os.chdir(workdir.name)
    return workdir


def _set_cpu_limit(seconds: float) -> None:
    """RLIMIT_CPU counts the process's whole life, so each call gets 'used so far + its own budget'."""
    import resource
    used = resource.getrusage(resource.RUSAGE_SELF)
    budget = int(used.ru_utime + used.ru_stime + seconds) + 1
    hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
    resource.setrlimit(resource.RLIMIT_CPU, (budget if hard == resource.RLIM_INFINITY else min(budget, hard), hard))


def _worker(conn, memory_mb: int) -> None:
    """Child loop: receive (fn, args, cpu_s), answer ('ok', value) or ('error', reason)."""
    import sympy  # noqa: F401 - imported before the memory cap and before 'ready', not on the first call's clock
    workdir = _limit_child(memory_mb)

    def answer(message):
        fn, args, cpu_s = message
        _set_cpu_limit(cpu_s)
        try:
            return "ok", fn(*args)
        except MemoryError:
            return "error", "memory"
        except RecursionError:
            return "error", "too deep"
        except Exception as e:  # noqa: BLE001 - any failure is a reason, never a crash of the worker
            return "error", f"error: {type(e).__name__}"
    serve_requests(conn, answer)
    workdir.cleanup()


class ToolVerifier:
    """Sandboxed SymPy verifier. Not thread-safe: one call at a time."""

    def __init__(self, timeout_s: float = 2.0, memory_mb: int = 512):
        self.timeout_s, self.memory_mb = timeout_s, memory_mb
        self._proc = self._conn = None
        self._stats = {"verified": 0, "refuted": 0, "not_checkable": 0, "timeouts": 0, "crashes": 0,
                       "tool_seconds": 0.0}

    # --- worker lifecycle ---
    def _start(self) -> None:
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        self._proc = ctx.Process(target=_worker, args=(child, self.memory_mb), daemon=True)
        self._proc.start()
        child.close()
        self._conn = parent
        try:
            started = parent.poll(START_TIMEOUT_S) and parent.recv()[0] == "ready"
        except (EOFError, OSError):      # the child died while starting (e.g. no importable __main__)
            started = False
        if not started:
            self._kill()
            raise RuntimeError("verifier worker did not start")

    def _kill(self) -> None:
        if self._proc is not None:
            if self._proc.is_alive():
                self._proc.kill()
            self._proc.join(5)
        if self._conn is not None:
            self._conn.close()
        self._proc = self._conn = None

    def close(self) -> None:
        if self._proc is not None and self._proc.is_alive():
            try:
                self._conn.send(None)
                self._proc.join(2)
            except (OSError, BrokenPipeError):
                pass
        self._kill()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- one sandboxed call ---
    def _death_reason(self) -> str:
        self._proc.join(1)
        code = self._proc.exitcode
        return "timeout" if code == -signal.SIGXCPU else "memory" if code == -signal.SIGKILL else "crashed"

    def _run(self, fn, *args) -> tuple[object, str | None]:
        """fn(*args) in the child: (value, None) or (None, reason). fn must be importable (module-level)."""
        if self._proc is None or not self._proc.is_alive():
            self._start()
        began = time.monotonic()
        try:
            self._conn.send((fn, args, self.timeout_s))
            if not self._conn.poll(self.timeout_s):
                reason = "timeout"
                self._kill()
            else:
                status, value = self._conn.recv()
                if status == "ok":
                    return value, None
                reason = value
        except (EOFError, OSError, BrokenPipeError):
            reason = self._death_reason()
            self._kill()
        finally:
            self._stats["tool_seconds"] += time.monotonic() - began
        if reason == "timeout":
            self._stats["timeouts"] += 1
        elif reason in ("crashed", "memory"):
            self._stats["crashes"] += 1
        return None, reason

    # --- public API ---
    def verify_step(self, step_text: str) -> StepVerdict:
        """Claims of the step with verdicts; overall refuted > verified > not_checkable."""
        value, reason = self._run(verify_step, step_text)
        verdict = value if reason is None else StepVerdict("not_checkable", [], reason)
        self._stats[verdict.verdict] += 1
        return verdict

    def answers_equivalent(self, a: str, b: str) -> bool:
        """Sandboxed `answers_equivalent`; a timeout or crash counts as not equivalent."""
        value, reason = self._run(answers_equivalent, a, b)
        return bool(value) if reason is None else False

    def stats(self) -> dict:
        return dict(self._stats)
