"""The placement plan: which placement groups a run reserves, and whether the cluster can hold them.

Pure functions of the config (and of node resource dicts), so every rule is testable without a cluster:
- one shared group (strategy `cluster.placement_strategy`) with a bundle per learner rank, the CARE reference
  and the PRM actors when on, and the rollout engines when each runs on one device (tp 1, or the CPU);
- a STRICT_PACK group per tensor-parallel vLLM engine: tp one-GPU bundles on one node.
`check_resources` fails before start-up saying what each role asked and what the cluster has.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from cluster.config import WaypointConfig


class PlacementError(RuntimeError):
    pass


# ---- the placement plan: pure functions of the config, testable without a cluster ----------------------------
RESOURCES = ("GPU", "CPU")


def _bundle(cpu: float, gpu: float) -> dict:
    return {k: v for k, v in (("GPU", gpu), ("CPU", cpu)) if v}


def tensor_parallel(cfg: WaypointConfig) -> int:
    """GPUs per rollout engine when it is a tensor-parallel vLLM engine (own placement group), else 1."""
    r = cfg.rollout
    return r.vllm.tensor_parallel_size if r.engine != "hf" and r.num_gpus > 0 else 1


@dataclass
class GroupPlan:
    """One placement group: its bundles, strategy, and which bundle each actor of each role is scheduled into."""
    name: str
    strategy: str
    bundles: list[dict] = field(default_factory=list)
    slots: dict[str, list[int]] = field(default_factory=dict)   # role -> bundle index of actor 0, 1, ...

    def add(self, role: str, bundle: dict, count: int) -> None:
        for _ in range(count):
            self.slots.setdefault(role, []).append(len(self.bundles))
            self.bundles.append(dict(bundle))

    def demand(self) -> dict[str, float]:
        return _sum_bundles(self.bundles)


def placement_plan(cfg: WaypointConfig) -> list[GroupPlan]:
    """The shared group first (learner ranks, CARE reference, PRM actors, and the rollout engines when tp is 1),
    then one STRICT_PACK group per tensor-parallel rollout engine (`rollout-0`, `rollout-1`, ...)."""
    r, L, care, prm = cfg.rollout, cfg.learner, cfg.algorithm.care, cfg.prm
    tp = tensor_parallel(cfg)
    shared = GroupPlan("shared", cfg.cluster.placement_strategy)
    if tp == 1:
        shared.add("rollout", _bundle(r.num_cpus, r.num_gpus), r.num_actors)
    shared.add("learner", _bundle(L.num_cpus, L.num_gpus), L.num_workers)
    if cfg.algorithm.care_on:
        shared.add("reference", _bundle(care.num_cpus, care.num_gpus), 1)
    if prm.enabled:
        shared.add("prm", _bundle(prm.num_cpus, prm.num_gpus), prm.num_actors)
    return [shared] + ([engine_group(cfg, i) for i in range(r.num_actors)] if tp > 1 else [])


def engine_group(cfg: WaypointConfig, index: int) -> GroupPlan:
    """A tensor-parallel engine's STRICT_PACK group: tp one-GPU bundles (vLLM's Ray executor rejects bundles of
    more than one GPU), each with rollout.num_cpus CPUs for the worker process on that GPU."""
    r = cfg.rollout
    g = GroupPlan(f"rollout-{index}", "STRICT_PACK")
    g.add("rollout", _bundle(r.num_cpus, 1), 1)          # the RolloutActor (its CPUs) and TP worker 0 (the GPU)
    g.add("tp-worker", _bundle(r.num_cpus, 1), tensor_parallel(cfg) - 1)   # the other tensor-parallel workers
    return g


def bundles_for(cfg: WaypointConfig) -> list[dict]:
    """Every bundle the run reserves: rollout engines (tp bundles each when tensor-parallel), learner ranks,
    the CARE reference model (when on), then the PRM actors (when on)."""
    groups = placement_plan(cfg)
    shared, engines = groups[0], groups[1:]

    def of(role):
        return [shared.bundles[i] for i in shared.slots.get(role, [])]
    return ([b for g in engines for b in g.bundles] + of("rollout") + of("learner") + of("reference")
            + of("prm"))


def _sum_bundles(bundles: list[dict]) -> dict[str, float]:
    total: dict[str, float] = {}
    for b in bundles:
        for k, v in b.items():
            total[k] = total.get(k, 0.0) + v
    return total


def _fmt(resources: dict[str, float], zero_gpu: bool = True) -> str:
    parts = [f"{resources.get(k, 0):g} {k}" for k in RESOURCES if resources.get(k, 0) or (k == "GPU" and zero_gpu)]
    parts += [f"{v:g} {k}" for k, v in sorted(resources.items()) if k not in RESOURCES and v]
    return ", ".join(parts)


def free_standing(cfg: WaypointConfig) -> dict:
    """What the actors outside every placement group ask: the reward actors (the buffer asks nothing)."""
    return {"CPU": cfg.reward.num_actors * cfg.reward.num_cpus}


def role_summary(cfg: WaypointConfig) -> list[str]:
    """What each role asks, e.g. "rollout: 2 engines x tp 4 = 8 GPU, 16 CPU" or "learner: 4 x 1 GPU = 4 GPU, 8 CPU"."""
    r, L, care, prm = cfg.rollout, cfg.learner, cfg.algorithm.care, cfg.prm
    tp = tensor_parallel(cfg)

    def line(role, n, cpu, gpu, what=""):
        per = f"{gpu:g} GPU" if gpu else f"{cpu:g} CPU"
        what = what[:-1] if n == 1 and what.endswith("s") else what
        return f"{role}: {n}{what} x {per} = {_fmt({'GPU': n * gpu, 'CPU': n * cpu}, zero_gpu=False)}"

    if tp > 1:
        lines = [f"rollout: {r.num_actors} engines x tp {tp} = "
                 f"{_fmt({'GPU': r.num_actors * tp, 'CPU': r.num_actors * tp * r.num_cpus})}"]
    else:
        lines = [line("rollout", r.num_actors, r.num_cpus, r.num_gpus, " engines")]
    lines.append(line("learner", L.num_workers, L.num_cpus, L.num_gpus))
    if cfg.algorithm.care_on:
        lines.append(line("reference", 1, care.num_cpus, care.num_gpus))
    if prm.enabled:
        lines.append(line("prm", prm.num_actors, prm.num_cpus, prm.num_gpus))
    lines.append(line("reward", cfg.reward.num_actors, cfg.reward.num_cpus, 0.0))
    return lines


def check_resources(cfg: WaypointConfig, available: dict, nodes: list[dict] | None = None) -> None:
    """Fail before start-up when the cluster cannot hold the plan, saying what each role asked and what the
    cluster has. `available`: total resources (`ray.cluster_resources()`); `nodes`: one resource dict per alive
    node (`ray.nodes()[i]["Resources"]`), for the per-node checks of `check_node_fit`."""
    groups = placement_plan(cfg)
    asked = _sum_bundles([b for g in groups for b in g.bundles] + [free_standing(cfg)])
    short = {k: v for k, v in asked.items() if v > available.get(k, 0) + 1e-9}
    if short:
        detail = ", ".join(f"{k}: asked {v:g}, cluster has {available.get(k, 0):g}" for k, v in short.items())
        raise PlacementError(f"the cluster cannot place this run ({detail}). "
                             f"{'; '.join(role_summary(cfg))}; asked {_fmt(asked)}, cluster has "
                             f"{_fmt({k: available.get(k, 0) for k in asked})}")
    if nodes is not None:
        check_node_fit(groups, nodes, role_summary(cfg))


def check_node_fit(groups: list[GroupPlan], nodes: list[dict], roles: list[str] | None = None,
                   max_steps: int = 200_000) -> None:
    """Per-node feasibility, pure: every bundle fits on some node; every STRICT_PACK group fits on one node; and
    the STRICT_PACK groups together can be laid out over the nodes (an exact search, capped at `max_steps`;
    optimistic, since other groups' bundles are not counted against the nodes)."""
    caps = [{k: float(n.get(k, 0)) for k in RESOURCES} for n in nodes]
    where = f"nodes: {'; '.join(_fmt(c) for c in caps) or 'none'}"
    tail = f" ({'; '.join(roles)})" if roles else ""

    def fits(need: dict, cap: dict) -> bool:
        return all(need.get(k, 0) <= cap.get(k, 0) + 1e-9 for k in RESOURCES)

    for g in groups:
        for b in g.bundles:
            if not any(fits(b, c) for c in caps):
                raise PlacementError(f"no node can hold a {g.name} bundle of {_fmt(b)}; {where}{tail}")
    packed = [g for g in groups if g.strategy == "STRICT_PACK"]
    for g in packed:
        if not any(fits(g.demand(), c) for c in caps):
            biggest = max((c.get("GPU", 0) for c in caps), default=0)
            raise PlacementError(
                f"placement group {g.name} needs {_fmt(g.demand())} on ONE node (STRICT_PACK: "
                f"{len(g.bundles)} bundles, e.g. one vLLM engine's tensor-parallel workers), but the largest node "
                f"has {biggest:g} GPU; {where}{tail}")
    if len(packed) > 1 and not _pack(packed, caps, max_steps):
        names = ", ".join(f"{g.name} ({_fmt(g.demand())})" for g in packed)
        raise PlacementError(f"the STRICT_PACK groups {names} cannot all be placed, each on one node; {where}{tail}")


def _pack(groups: list[GroupPlan], caps: list[dict], max_steps: int) -> bool:
    """Whether the groups' demands can be assigned to nodes (multi-dimensional bin packing by backtracking,
    largest first, trying each distinct remaining capacity once). Past `max_steps`: True (unknown)."""
    needs = sorted((g.demand() for g in groups), key=lambda d: tuple(-d.get(k, 0) for k in RESOURCES))
    free = [dict(c) for c in caps]
    steps = 0

    def place(i: int) -> bool:
        nonlocal steps
        if i == len(needs):
            return True
        tried = set()
        for c in free:
            key = tuple(round(c[k], 6) for k in RESOURCES)
            if key in tried or not all(needs[i].get(k, 0) <= c[k] + 1e-9 for k in RESOURCES):
                continue
            tried.add(key)
            steps += 1
            if steps > max_steps:
                return True
            for k in RESOURCES:
                c[k] -= needs[i].get(k, 0)
            ok = place(i + 1)
            for k in RESOURCES:
                c[k] += needs[i].get(k, 0)
            if ok:
                return True
        return False

    return place(0)
