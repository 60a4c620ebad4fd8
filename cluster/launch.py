"""Ray start-up and actor placement.

`start_cluster` joins an existing cluster (an address in the config, or RAY_ADDRESS as set by
`ray job submit`) or starts a local one bound to loopback. `spawn_actors` creates named actors with dedicated
resources, checked against the cluster (totals and per node) before anything starts:

- one shared placement group (strategy `cluster.placement_strategy`) with a bundle per learner rank
  (`{"GPU": learner.num_gpus, "CPU": learner.num_cpus}`), the CARE reference and the PRM actors when on, and
  the rollout engines when each runs on one device (tensor_parallel_size 1, or the CPU);
- a STRICT_PACK group per tensor-parallel vLLM engine: tp bundles `{"GPU": 1, "CPU": rollout.num_cpus}` on one
  node. The RolloutActor sits in bundle 0 with num_gpus=0 and placement_group_capture_child_tasks, so vLLM's Ray
  executor (which takes the first tp GPU bundles of the group it runs in) puts its tp workers in this group.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import ray
from ray.util.placement_group import placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from cluster.config import WaypointConfig
from cluster.placement import (GroupPlan, PlacementError, bundles_for, check_resources, engine_group, free_standing,
                               placement_plan, role_summary, tensor_parallel)


def worker_env(use_gpu: bool) -> dict[str, str]:
    env = {
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
        "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
        # vLLM logs every in-place weight reload at INFO (and a harmless rotary-embedding WARNING)
        "VLLM_LOGGING_LEVEL": os.environ.get("VLLM_LOGGING_LEVEL", "ERROR"),
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "PYTHONWARNINGS": "ignore::UserWarning",
    }
    if not use_gpu:
        env["DS_ACCELERATOR"] = "cpu"
        env["CUDA_VISIBLE_DEVICES"] = ""
    # PYTHONPATH: modules named in algorithm.plugins must import in the learner workers too
    for key in ("WAYPOINT_CACHE", "WAYPOINT_REASONMAP_DIR", "WAYPOINT_LOCAL_CLUSTER", "HF_HUB_OFFLINE", "PYTHONPATH"):
        if key in os.environ:
            env[key] = os.environ[key]
    return env


def start_cluster(cfg: WaypointConfig) -> dict:
    c = cfg.cluster
    if ray.is_initialized():
        return {"mode": "existing"}
    address = c.address or os.environ.get("RAY_ADDRESS")
    if address:
        # Under `ray job submit` RAY_ADDRESS points at the cluster this job runs in. No runtime_env here:
        # it would replace the job's (its working_dir); actors add their env vars on top instead.
        ray.init(address=address, log_to_driver=True)
        return {"mode": "joined", "address": address}
    os.environ["WAYPOINT_LOCAL_CLUSTER"] = "1"
    ray.init(address="local", num_cpus=c.num_cpus or max(os.cpu_count() or 1, _cpus_needed(cfg)),
             num_gpus=0 if not _uses_gpu(cfg) else None, include_dashboard=c.include_dashboard,
             dashboard_host=c.host, _node_ip_address=c.host,
             **({"dashboard_port": c.dashboard_port} if c.include_dashboard else {}),
             log_to_driver=True, configure_logging=False)
    return {"mode": "local", "dashboard": f"http://{c.host}:{c.dashboard_port}" if c.include_dashboard else None}


def _uses_gpu(cfg: WaypointConfig) -> bool:
    care, prm = cfg.algorithm.care, cfg.prm
    return (cfg.rollout.num_gpus > 0 or cfg.learner.num_gpus > 0 or (cfg.algorithm.care_on and care.num_gpus > 0)
            or (prm.enabled and prm.num_gpus > 0))


def _cpus_needed(cfg: WaypointConfig) -> int:
    need = sum(b.get("CPU", 0) for b in bundles_for(cfg)) + free_standing(cfg)["CPU"]
    return int(need + 0.999)


def node_resources() -> list[dict]:
    """Total resources of every alive node of the connected cluster."""
    return [dict(n.get("Resources", {})) for n in ray.nodes() if n.get("Alive", n.get("alive", False))]


@dataclass
class Actors:
    rollout: list
    reward: list
    buffer: object
    learner_workers: list
    placement_group: object
    reference: list = field(default_factory=list)   # GRPO-CARE EMA reference (empty when CARE is off)
    prm: list = field(default_factory=list)         # GroundedPRM step scorers (empty when prm.enabled is off)
    rollout_groups: list = field(default_factory=list)   # one STRICT_PACK group per tensor-parallel engine
    starting: list = field(default_factory=list)   # (actor name, ready ref) of the actors still starting
    # role -> (index, restart number) -> a fresh actor in the dead one's place
    respawn: dict = field(default_factory=dict)

    def weight_consumers(self) -> list:
        """Who receives each new weight set, as the pools stand now (a replaced actor included)."""
        return self.rollout + self.reference

    def shutdown(self) -> None:
        """Kill every actor and free the placement groups (a long-lived cluster outlives the run)."""
        from ray.util.placement_group import remove_placement_group
        for a in [*self.rollout, *self.reward, self.buffer, *self.learner_workers, *self.reference, *self.prm]:
            ray.kill(a, no_restart=True)
        for pg in [self.placement_group, *self.rollout_groups]:
            remove_placement_group(pg)


def reward_options(cfg: WaypointConfig) -> dict:
    """Keyword options of the task's scorer (`rewards.map_vqa.score` or `rewards.math_answer.score`)."""
    if cfg.data.task == "math":
        return {"format_weight": cfg.reward.format_weight, "answer_format": cfg.data.answer_format}
    return {"detail_penalty": cfg.reward.detail_penalty, "format_weight": cfg.reward.format_weight,
            "counting1_detail_enabled": cfg.reward.counting1_detail, "unwrap_text": cfg.reward.unwrap_text,
            "answer_format": cfg.data.answer_format}


def engine_strategy(pg) -> PlacementGroupSchedulingStrategy:
    """Bundle 0 of a tensor-parallel engine's group; the engine's vLLM workers (child actors) join the group."""
    return PlacementGroupSchedulingStrategy(placement_group=pg, placement_group_bundle_index=0,
                                            placement_group_capture_child_tasks=True)


def rollout_actor(cfg: WaypointConfig, model_path: str, engine: str, vision: bool, index: int, env: dict,
                  **options):
    """RolloutActor number `index` of this config (`options`: Ray actor options such as name, scheduling).

    A tensor-parallel vLLM engine asks no GPU itself (num_gpus=0): its tp workers take one GPU bundle each of
    the engine's STRICT_PACK group. Without a scheduling strategy in `options` (evaluation, search) it gets a
    group of its own here, freed with the job."""
    from actors.rollout import RolloutActor
    r = cfg.rollout
    num_gpus = r.num_gpus
    tp = tensor_parallel(cfg) if engine == "vllm" else 1
    if tp > 1:
        num_gpus = 0
        if "scheduling_strategy" not in options:
            group = engine_group(cfg, index)
            pg = placement_group(group.bundles, strategy=group.strategy, name=options.get("name", ""))
            _wait_ready([pg], [group.bundles], cfg)
            options["scheduling_strategy"] = engine_strategy(pg)
    return RolloutActor.options(num_cpus=r.num_cpus, num_gpus=num_gpus, runtime_env=env, **options).remote(
        model_path, engine, vision, r.model_dump(), cfg.data.include_map_text, seed=cfg.train.seed + index,
        dtype=cfg.model.dtype, torch_threads=r.threads, answer_format=cfg.data.answer_format)


def reward_actor(cfg: WaypointConfig, env: dict, **options):
    """A RewardActor for this config's task (`options`: Ray actor options)."""
    from actors.reward import RewardActor
    return RewardActor.options(num_cpus=cfg.reward.num_cpus, runtime_env=env, **options).remote(
        cfg.data.task, reward_options(cfg), cfg.reward.sample_timeout_s, cfg.reward.startup_timeout_s)


def prm_actor(cfg: WaypointConfig, model_path: str, engine: str, env: dict, **options):
    """A PRMActor: tool-only without prm.model, else the PRM checkpoint on a rollout engine."""
    from actors.prm import PRMActor
    p = cfg.prm
    prm_path = p.model
    if prm_path:
        from learner.model_zoo import resolve_model
        prm_path = resolve_model(prm_path, cache_dir=cfg.model.cache_dir, seed=cfg.model.seed)
    # The PRM's engine lives in the PRM actor's one bundle (prm.num_gpus): never tensor-parallel
    rollout_cfg = cfg.rollout.model_dump()
    rollout_cfg["vllm"]["tensor_parallel_size"] = 1
    return PRMActor.options(num_cpus=p.num_cpus, num_gpus=p.num_gpus, runtime_env=env, **options).remote(
        {**p.model_dump(), "model": prm_path}, model_path, engine="hf" if engine == "hf" else "vllm",
        rollout_cfg=rollout_cfg, seed=cfg.train.seed, torch_threads=max(1, int(p.num_cpus)))


def _wait_ready(pgs: list, bundles: list[list[dict]], cfg: WaypointConfig, timeout_s: float = 120.0) -> None:
    """Wait for the groups; on a timeout free them and say what was asked and what the cluster has free."""
    from ray.util.placement_group import remove_placement_group
    try:
        ray.get([pg.ready() for pg in pgs], timeout=timeout_s)
    except ray.exceptions.GetTimeoutError as e:
        for pg in pgs:
            remove_placement_group(pg)
        raise PlacementError(f"placement groups {bundles} not ready after {timeout_s:g} s "
                             f"({'; '.join(role_summary(cfg))}; free now: {ray.available_resources()})") from e


def reserve_placement(cfg: WaypointConfig, prefix: str = "") -> tuple[GroupPlan, object, list]:
    """Check the plan against the cluster, then create and wait for its groups: (shared plan, shared group,
    one group per tensor-parallel engine)."""
    plan = placement_plan(cfg)
    check_resources(cfg, ray.cluster_resources(), node_resources())
    shared_plan, engine_plans = plan[0], plan[1:]
    # The shared group first, so a PACK strategy gets the learner ranks onto as few nodes as it can before the
    # engines' STRICT_PACK groups take GPUs of their own
    pg = placement_group(shared_plan.bundles, strategy=shared_plan.strategy, name=f"{prefix}waypoint")
    _wait_ready([pg], [shared_plan.bundles], cfg)
    engine_pgs = [placement_group(g.bundles, strategy=g.strategy, name=f"{prefix}waypoint-{g.name}")
                  for g in engine_plans]
    try:
        _wait_ready(engine_pgs, [g.bundles for g in engine_plans], cfg)
    except PlacementError:
        from ray.util.placement_group import remove_placement_group
        remove_placement_group(pg)
        raise
    return shared_plan, pg, engine_pgs


def standalone_env(cfg: WaypointConfig) -> dict:
    """For CLIs outside the training loop: join or start the cluster; the runtime env of their actors."""
    start_cluster(cfg)
    return {"env_vars": worker_env(cfg.rollout.num_gpus > 0)}


def standalone_rollout(cfg: WaypointConfig, model_path: str, engine: str, vision: bool) -> tuple[list, dict]:
    """For CLIs outside the training loop (evaluate, build_prm_data, search): join or start the cluster and
    create the config's rollout actors; returns (actors, the runtime env for any further actors)."""
    env = standalone_env(cfg)
    return [rollout_actor(cfg, model_path, engine, vision, i, env) for i in range(cfg.rollout.num_actors)], env


def wait_started(starting: list[tuple[str, object]], timeout_s: float = 900.0) -> None:
    """Block until every (name, ref) of a start-up task is done; the first to fail stops the wait with its name
    and error (engines, DeepSpeed init and model loads run at once, so whichever breaks first is reported). What
    has not started within `timeout_s` (never scheduled, or hung) fails the run naming it and the free resources."""
    names = {ref: name for name, ref in starting}
    pending = list(names)
    deadline = time.monotonic() + timeout_s
    while pending:
        done, pending = ray.wait(pending, num_returns=1, timeout=max(deadline - time.monotonic(), 0.0))
        if not done:
            raise PlacementError(f"not started after {timeout_s:g} s: {', '.join(names[r] for r in pending)} "
                                 f"(free now: {ray.available_resources()}; an actor the cluster cannot schedule "
                                 f"waits here: see `ray status` for pending demands)")
        try:
            ray.get(done[0])
        except Exception as e:  # noqa: BLE001 - re-raised with the actor's name
            raise RuntimeError(f"start-up of {names[done[0]]} failed: {type(e).__name__}: {e}") from e


def spawn_actors(cfg: WaypointConfig, model_path: str, vision: bool, engine: str, prefix: str = "",
                 wait: bool = True) -> Actors:
    """Named actors (`{prefix}rollout-0`, ...), so the Ray dashboard shows which is which. The actors start
    concurrently; `wait=False` returns before their engines and models are up (`Actors.starting` holds what to
    pass to `wait_started`), so the caller can set up the learner and load data meanwhile."""
    from actors.buffer import TrajectoryBuffer
    from actors.learner_worker import LearnerWorker
    from actors.reference import ReferenceActor

    shared_plan, pg, engine_pgs = reserve_placement(cfg, prefix)

    def at(role, i):
        return PlacementGroupSchedulingStrategy(placement_group=pg,
                                                placement_group_bundle_index=shared_plan.slots[role][i])

    env = {"env_vars": worker_env(_uses_gpu(cfg))}

    r = cfg.rollout
    def new_rollout(i: int, name: str):
        return rollout_actor(cfg, model_path, engine, vision, i, env, name=name,
                             scheduling_strategy=engine_strategy(engine_pgs[i]) if engine_pgs else at("rollout", i))

    rollout = [new_rollout(i, f"{prefix}rollout-{i}") for i in range(r.num_actors)]
    L = cfg.learner
    learners = [LearnerWorker.options(name=f"{prefix}learner-{i}", num_cpus=L.num_cpus, num_gpus=L.num_gpus,
                                      scheduling_strategy=at("learner", i), runtime_env=env).remote(
        i, L.num_workers)
                for i in range(L.num_workers)]
    reward = [reward_actor(cfg, env, name=f"{prefix}reward-{i}") for i in range(cfg.reward.num_actors)]
    buffer = TrajectoryBuffer.options(name=f"{prefix}buffer", runtime_env=env).remote(
        cfg.buffer.capacity, cfg.buffer.max_staleness)
    care = cfg.algorithm.care

    def new_reference(name: str):
        return ReferenceActor.options(
            name=name, num_cpus=care.num_cpus, num_gpus=care.num_gpus, runtime_env=env,
            scheduling_strategy=at("reference", 0)).remote(
            model_path, vision, care, dtype=cfg.model.dtype, torch_threads=max(1, int(care.num_cpus)),
            attn_implementation=cfg.model.attn_implementation)

    reference = [new_reference(f"{prefix}reference")] if cfg.algorithm.care_on else []
    prm = [prm_actor(cfg, model_path, engine, env, name=f"{prefix}prm-{i}", scheduling_strategy=at("prm", i))
           for i in range(cfg.prm.num_actors if cfg.prm.enabled else 0)]
    starting = [(f"{prefix}{role}-{i}", a.ready.remote())            # surface start-up errors before the run
                for role, group in (("rollout", rollout), ("reference", reference), ("prm", prm), ("reward", reward))
                for i, a in enumerate(group)]
    respawn = {"reward": lambda i, n: reward_actor(cfg, env, name=f"{prefix}reward-{i}-restart{n}"),
               # weight holders: replaced by cluster.restarts, which loads the weights before they serve
               "rollout": lambda i, n: new_rollout(i, f"{prefix}rollout-{i}-restart{n}"),
               "reference": lambda i, n: new_reference(f"{prefix}reference-restart{n}")}
    if prm:
        respawn["prm"] = lambda i, n: prm_actor(cfg, model_path, engine, env, name=f"{prefix}prm-{i}-restart{n}",
                                                scheduling_strategy=at("prm", i))
    actors = Actors(rollout, reward, buffer, learners, pg, reference, prm, rollout_groups=engine_pgs,
                    starting=starting, respawn=respawn)
    if wait:
        wait_started(starting)
    return actors
