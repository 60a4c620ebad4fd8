"""rewards/ must stay importable without Ray or torch (docs/architecture.md#layering)."""

import subprocess
import sys


def test_rewards_imports_no_ray_or_torch():
    code = ("import sys, rewards.map_vqa, rewards.answer, rewards.stations, rewards.errors, rewards.math_answer, "
            "rewards.prm.mcts, rewards.prm.labels, rewards.prm.rationale, rewards.prm.score, rewards.prm.steps, "
            "rewards.prm.parse, rewards.prm.claims, rewards.prm.verify; "
            "bad = sorted(m for m in ('ray', 'torch') if m in sys.modules); "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
