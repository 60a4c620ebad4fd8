"""`make run`'s default config trains end to end and learns the answer FORMAT: the margin stated in the README.

This is a format test, not a claim that the model reads the map: a policy that always answers \\boxed{yes}
scores about 6.77 total reward and 0.5 accuracy on this balanced yes/no data, about where the default run ends.
Whether a model gets better at the task itself is measured on held-out questions against the best constant
answer (benchmarks/, not a test).

The tiny policy starts from random weights; within the default 60 steps it discovers and then mostly uses
the answer format (format ~0 -> 0.8-0.95), which lifts mean total reward from under 1 to 5-7. When the format
is first found depends on the random init (two tokenizer builds: step ~10 and step ~30), so we require the
mean of the last quarter of steps to exceed the first quarter's by MARGIN reward points and a last-quarter
format rate above FORMAT_RATE, not a particular curve.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
MARGIN = 3.0          # reward points (the reward scale is 0 .. ~16.5 for perception questions)
FORMAT_RATE = 0.6     # from ~0.02 in the first quarter


@pytest.mark.slow
def test_default_config_learns_the_answer_format(tmp_path):
    run_dir = tmp_path / "run"
    env = dict(os.environ)
    env.setdefault("WAYPOINT_CACHE", os.path.expanduser("~/.cache/waypoint"))
    cmd = [sys.executable, "-m", "cluster.train", "--config", "configs/cpu_tiny.yaml",
           "--set", f"train.run_dir={run_dir}", "--set", "train.progress=false",
           "--set", "cluster.include_dashboard=false"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 60
    q = len(records) // 4
    first = np.mean([r["reward/total"] for r in records[:q]])
    last = np.mean([r["reward/total"] for r in records[-q:]])
    fmt_last = np.mean([r["reward/format"] for r in records[-q:]])
    print(f"mean total reward: first quarter {first:.2f}, last quarter {last:.2f}; last-quarter format {fmt_last:.2f}")
    assert last > first + MARGIN, (first, last)
    assert fmt_last > FORMAT_RATE
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["accounting"]["closes"] and summary["accounting"]["consumed"] == 60 * 8
