"""In-process learner fixtures: a one-rank gloo process group and synthetic scored groups (no Ray)."""
import os
import socket

import numpy as np

from data.trajectory import Sample, TrajectoryGroup


def init_single_rank() -> None:
    """DeepSpeed's process group of one rank in this process (once)."""
    import deepspeed
    import torch.distributed as dist
    if dist.is_initialized():
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
    deepspeed.init_distributed(dist_backend="gloo", auto_mpi_discovery=False)


def scored_groups(n_groups: int, g: int, vocab: int, seed: int = 0, prompt_len=(5, 9), resp_len=(1, 6),
                  rewards=None) -> list[TrajectoryGroup]:
    """Random prompts and responses with rewards that vary inside every group (so every group has gradient)."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n_groups):
        prompt = rng.integers(3, vocab, rng.integers(*prompt_len)).tolist()
        samples = []
        for _ in range(g):
            n = int(rng.integers(*resp_len))
            samples.append(Sample(rng.integers(3, vocab, n).tolist(), (-rng.random(n) * 3).tolist(), "", "stop", 0))
        grp = TrajectoryGroup(f"g{k}", f"p{k}", {"type": "torf1"}, prompt, samples, 0)
        r = np.asarray(rewards[k] if rewards is not None else rng.permutation(g) % 2, dtype=float)
        grp.rewards = {"total": r, "accuracy": (r > 0).astype(float), "accuracy_reward": 10.0 * (r > 0)}
        grp.answers, grp.reward_failures = [""] * g, [None] * g
        grp.answer_classes = ["yes" if x > 0 else "no" for x in r]
        out.append(grp)
    return out
