"""Shared test set-up: loopback-only Ray, CPU-only frameworks, one thread per process, a shared model cache."""
import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: end-to-end tests (minutes); CI runs them too")
    config.addinivalue_line("markers", "gpu: needs a CUDA GPU; skipped without one")


CPU_TINY_SMALL = ("cluster.include_dashboard=false", "cluster.num_cpus=6", "train.progress=false",
                  "data.n_networks=20", "rollout.group_size=4", "train.groups_per_step=2",
                  "rollout.prompts_per_call=2", "learner.micro_batch_size=4")


def small_cfg(tmp_path, *extra, config: str = "configs/cpu_tiny.yaml"):
    """A config shrunk to 2 groups of 4 per step, writing under tmp_path (end-to-end tests on local Ray)."""
    from cluster.config import load_config
    return load_config(ROOT / config, [*CPU_TINY_SMALL, f"train.run_dir={tmp_path / 'run'}", *extra])


def assert_catalogued(records: list[dict]) -> None:
    """Every key a run logged is in cluster.metrics.METRICS, the names dashboards may query."""
    from cluster.metrics import flatten, is_catalogued
    unknown = sorted({k for r in records for k in flatten(r) if not is_catalogued(k)})
    assert not unknown, f"logged but not in cluster.metrics.METRICS: {unknown}"


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray cluster on loopback per test module."""
    import ray
    from cluster.config import load_config
    from cluster.launch import start_cluster
    start_cluster(load_config(ROOT / "configs/cpu_tiny.yaml", list(CPU_TINY_SMALL[:2])))
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def verifier():
    """A sandboxed SymPy tool verifier (GroundedPRM), one per test module."""
    from rewards.prm.verify import ToolVerifier
    v = ToolVerifier(timeout_s=2.0, memory_mb=512)
    yield v
    v.close()
