"""`python -m cluster.make_data` end to end, as a subprocess."""
import subprocess
import sys
from pathlib import Path

from data.dataset import load_rows

ROOT = Path(__file__).resolve().parents[1]


def test_make_data_synthetic(tmp_path):
    out = tmp_path / "syn.parquet"
    cmd = [sys.executable, "-m", "cluster.make_data", "synthetic", "--out", str(out), "--n-networks", "3",
           "--per-type", "2", "--seed", "1", "--image-size", "128", "--types", "torf1,planning,counting2"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "planning" in proc.stdout and "sources: synthetic=" in proc.stdout
    result = load_rows(out)
    assert not result.errors
    assert {r["type"] for r in result.rows} == {"torf1", "planning", "counting2"}
    assert len(result.rows) == 3 * (2 + 2 + 1)
    assert all(r["figure"] for r in result.rows)


def test_make_data_rejects_unknown_type(tmp_path):
    cmd = [sys.executable, "-m", "cluster.make_data", "synthetic", "--out", str(tmp_path / "x.parquet"),
           "--types", "torf7"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "unknown types" in proc.stderr
