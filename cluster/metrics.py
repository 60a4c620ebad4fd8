"""Step metrics: one JSONL line per step and the same numbers as Prometheus gauges on loopback.

Metric names in Prometheus are `waypoint_` + the JSONL key with `/` and `.` turned into `_`
(e.g. `reward/total` -> `waypoint_reward_total`).
"""
from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, start_http_server


def prometheus_name(key: str) -> str:
    return "waypoint_" + re.sub(r"[^a-zA-Z0-9_]", "_", key)


def flatten(record: dict, prefix: str = "") -> dict[str, float]:
    """Nested dicts of numbers -> {"a/b": x}; non-numeric leaves are skipped."""
    out: dict[str, float] = {}
    for k, v in record.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "/"))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[key] = float(v)
    return out


class MetricsLogger:
    def __init__(self, run_dir: str | Path, host: str = "127.0.0.1", port: int = 0):
        self.path = Path(run_dir) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a")
        self.registry = CollectorRegistry()
        self.gauges: dict[str, Gauge] = {}
        self.port = None
        self._server = None
        if port >= 0:
            server, _thread = start_http_server(port, addr=host, registry=self.registry)
            self._server = server
            self.port = server.server_port
        self.start = time.time()

    def log(self, step: int, record: dict) -> None:
        line = {"step": step, "time": round(time.time() - self.start, 3), **record}
        self._file.write(json.dumps(line, default=_jsonable) + "\n")
        self._file.flush()
        for key, value in flatten(record).items():
            if math.isfinite(value):
                self._gauge(key).set(value)
        self._gauge("step").set(step)

    def _gauge(self, key: str) -> Gauge:
        if key not in self.gauges:
            self.gauges[key] = Gauge(prometheus_name(key), f"waypoint metric {key}", registry=self.registry)
        return self.gauges[key]

    def close(self) -> None:
        self._file.close()
        if self._server is not None:
            self._server.shutdown()


def _jsonable(x):
    try:
        return float(x)
    except (TypeError, ValueError):
        return str(x)


def read_jsonl(path: str | Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
