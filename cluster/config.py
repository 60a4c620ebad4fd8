"""One pydantic model tree for a whole run, loaded from YAML with `--set a.b=c` overrides.

Every section forbids unknown keys, so a typo in a config file is an error that names the key and the file
instead of a silently ignored knob. Paper knobs carry the paper's default (docs/algorithms.md#decisions).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from learner.algorithms.config import AlgorithmConfig
from learner.config import LearnerConfig, LoRAConfig, Section
from rewards.map_vqa import QUESTION_TYPES



class ConfigError(ValueError):
    """A config that cannot be used; the message names the key and where it came from."""


class ClusterConfig(Section):
    address: str | None = None            # None: start a local Ray cluster (or join the one we run inside)
    num_cpus: int | None = None           # logical CPUs for a local cluster (actors are mostly I/O bound)
    host: str = "127.0.0.1"               # dashboard, metrics and job API bind here unless changed
    include_dashboard: bool = True
    dashboard_port: int = 8265
    metrics_port: int = 0                 # Prometheus exporter of the controller; 0 = pick a free port, -1 = off
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK"] = "PACK"
    max_restarts: int = Field(3, ge=0)    # per role: dead reward / PRM actors replaced, their groups re-scored


class ModelConfig(Section):
    name: str = "tiny-qwen2"              # tiny-qwen2 | tiny-qwen2-vl | smollm2-135m-instruct | a local path
    #                                       | a Hugging Face hub id (org/name, e.g. Qwen/Qwen2.5-VL-7B-Instruct)
    seed: int = 0                         # seed of a tiny model built here
    overrides: dict[str, Any] = Field(default_factory=dict)  # tiny-model size knobs (hidden_size, ...)
    cache_dir: str | None = None
    dtype: Literal["float32", "bfloat16"] = "float32"
    # transformers attention of the learner and the CARE reference: sdpa | eager | flash_attention_2 | auto
    # (auto: flash_attention_2 where the flash_attn package, CUDA and a 16-bit dtype are all there, else sdpa)
    attn_implementation: str = "sdpa"
    lora: LoRAConfig | None = None        # set (e.g. `model.lora={r: 16}`): train LoRA adapters only (PEFT)

    @model_validator(mode="after")
    def _check(self) -> "ModelConfig":
        if self.attn_implementation == "flash_attention_2" and self.dtype == "float32":
            raise ValueError("attn_implementation=flash_attention_2 runs in 16-bit only: set model.dtype=bfloat16 "
                             "(or attn_implementation=auto, which falls back to sdpa in float32)")
        return self


class StageConfig(Section):
    name: str
    types: list[str]


class CurriculumConfig(Section):
    """RewardMap's multi-stage curriculum (docs/algorithms.md#rewardmap-curriculum): stages of question types and
    a switch rule."""
    enabled: bool = False
    mode: Literal["staged", "released_order"] = "staged"   # released_order: one ordered pass, no switches
    stages: list[StageConfig] | None = None   # None: yes/no -> counting -> stops-between -> planning
    rule: Literal["after_steps", "when_accuracy"] = "after_steps"
    after_steps: int = Field(50, ge=1)        # optimizer steps per stage
    accuracy: float = Field(0.6, ge=0.0, le=1.0)   # when_accuracy: mean group accuracy over the window
    window: int = Field(32, ge=1)             # groups of the current stage


class VASConfig(Section):
    """MMR1 Variance-Aware Sampling (docs/algorithms.md#mmr1-vas)."""
    enabled: bool = False
    mix_ratio: float = Field(0.5, ge=0.0, le=1.0)   # lambda: share of each batch drawn by VPS
    update_every: int = Field(35, ge=1)       # T_update: optimizer steps between scoring passes
    samples: int = Field(8, ge=2)             # N rollouts per prompt in a scoring pass
    alpha: float = 0.8                        # VPS = alpha OVS + beta TDS
    beta: float = 0.2
    diversity: Literal["inv_self_bleu", "distinct_n", "self_bleu"] = "inv_self_bleu"
    momentum: float = Field(0.0, ge=0.0, le=1.0)


class DataConfig(Section):
    task: Literal["map_vqa", "math"] = "map_vqa"   # math: MATH-style problems with a \\boxed{} ground truth
    source: Literal["synthetic", "real", "parquet"] = "synthetic"
    # source parquet: rows from data.path: a parquet / JSON / JSONL file, a folder of them, a `datasets`
    # save_to_disk folder, or a hub dataset id ("owner/name", needs the hub); split: of the last two
    path: str | None = None
    split: str = "train"
    math_problems: int = 64               # synthetic math problems (task math, source synthetic)
    types: list[str] = Field(default_factory=lambda: ["torf1", "torf2"])
    n_networks: int = 200
    per_type: int = 4
    seed: int = 0
    images: bool = False                  # render map images (needed by vision-language models)
    image_size: int = 224
    include_map_text: bool = True         # put the line -> stations table into the prompt
    answer_format: Literal["boxed", "tags"] = "boxed"   # boxed{} (RewardMap) or <think>/<answer> tags (R1)
    curriculum: CurriculumConfig = Field(default_factory=CurriculumConfig)
    vas: VASConfig = Field(default_factory=VASConfig)

    @model_validator(mode="after")
    def _check(self) -> "DataConfig":
        if self.task == "math":
            if self.source == "real":
                raise ValueError("data.source=real holds map questions; math uses synthetic or parquet")
            if self.types != ["math"]:
                self.types = ["math"]          # one row type; curriculum stages and VAS see it by name
            return self
        bad = [t for t in self.types if t.lower() not in QUESTION_TYPES]
        if bad:
            raise ValueError(f"unknown question types {bad}; known: {list(QUESTION_TYPES)}")
        if self.source == "parquet" and not self.path:
            raise ValueError("data.source=parquet needs data.path")
        if self.curriculum.enabled and self.curriculum.stages is not None:
            staged = {t.lower() for st in self.curriculum.stages for t in st.types}
            missing = sorted(staged - {t.lower() for t in self.types})
            if missing:
                raise ValueError(f"curriculum stages use question types {missing} that data.types does not load")
        return self


class VLLMConfig(Section):
    kv_cache_gb: float = 1.0              # VLLM_CPU_KVCACHE_SPACE on CPU
    gpu_memory_utilization: float = 0.6
    # GPUs per engine. > 1: the engine gets its own STRICT_PACK placement group of that many one-GPU bundles
    # (one node), and vLLM's Ray executor puts its tensor-parallel workers there
    tensor_parallel_size: int = Field(1, ge=1)
    enforce_eager: bool = True
    max_model_len: int = Field(2048, ge=16)   # prompt (image tokens included) + response tokens per sequence


class RolloutConfig(Section):
    engine: Literal["vllm", "hf", "auto"] = "auto"   # auto: vllm for text models, hf for vision-language on CPU
    num_actors: int = 1
    group_size: int = 8                   # G samples per prompt
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 24
    prompts_per_call: int = 4             # prompts batched into one engine call
    hf_max_batch: int = Field(32, ge=1)   # hf engine: most sequences (prompts x samples) per generate call
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    # CPU threads of the engine (vLLM-CPU's and torch's); default: num_cpus. More than num_cpus pays where the
    # rollout and the learner take turns on the same cores (max_staleness: 0) and outside training (evaluate)
    torch_threads: int | None = Field(None, ge=1)
    vllm: VLLMConfig = Field(default_factory=VLLMConfig)

    @model_validator(mode="after")
    def _check(self) -> "RolloutConfig":
        tp = self.vllm.tensor_parallel_size
        if tp > 1:
            if self.engine == "hf":
                raise ValueError("rollout.vllm.tensor_parallel_size > 1 is a vLLM setting; rollout.engine=hf "
                                 "runs one model copy per actor")
            if self.num_gpus != 1:
                raise ValueError(f"rollout.vllm.tensor_parallel_size={tp} needs rollout.num_gpus=1 (one whole GPU "
                                 f"per tensor-parallel worker, {tp} per engine); tensor parallelism is GPU-only")
        return self

    @property
    def threads(self) -> int:
        return self.torch_threads or max(1, int(self.num_cpus))

    @property
    def gpus_per_engine(self) -> float:
        return float(self.vllm.tensor_parallel_size) if self.vllm.tensor_parallel_size > 1 else self.num_gpus


class RewardConfig(Section):
    num_actors: int = 1
    detail_penalty: Literal["paper", "released"] = "paper"
    format_weight: float = 1.0            # 0 reproduces the released RewardMap code (no format term)
    counting1_detail: bool = False        # defined but disabled in the released code
    unwrap_text: bool = True              # read \boxed{\text{Yes}} as "yes"; False reproduces the released parser
    sample_timeout_s: float = 5.0         # per-sample limit; a sample over it gets reward 0 and a counted reason
    startup_timeout_s: float = 120.0      # scoring worker's spawn + imports, its own limit (not a sample's)
    num_cpus: float = 0.25


class MCTSConfig(Section):
    """GroundedPRM's label search (docs/algorithms.md#groundedprm-mcts): `python -m cluster.build_prm_data`."""
    child_nums: int = Field(3, ge=1)      # k children per expansion
    simulation_depth: int = Field(5, ge=1)
    max_rounds: int = Field(8, ge=1)      # execute_round (12 with depth 9 for MATH level > 3)
    exploration: float = 1.8              # c in UCT
    decay: float = Field(0.9, ge=0.0, le=1.0)   # ancestor decay of the backed-up reward
    paths_per_label: int = Field(3, ge=1)  # stop at this many positive and negative full paths
    selection: Literal["uct", "random"] = "uct"   # random reproduces the released code
    # model: the config's policy writes the steps; scripted: the reference solution's steps, every third one
    # corrupted (actors/scripted_policy.py), for a policy too weak to reach answers
    policy: Literal["model", "scripted"] = "model"
    policy_temperature: float = 1.0
    step_max_tokens: int = Field(64, ge=1)
    judge: str | None = None              # a judge model (zoo name or path); None: step values from the tool
    judge_temperature: float = 0.6
    judge_max_tokens: int = 128
    problems: int = Field(8, ge=1)        # synthetic problems when data.source is synthetic
    out_dir: str = "runs/prm_data"


class SearchConfig(Section):
    """Reward-guided greedy search (`python -m cluster.search`)."""
    candidates: int = Field(8, ge=1)      # next steps sampled per move; the PRM keeps the best
    temperature: float = 0.7
    max_steps: int = Field(8, ge=1)
    step_max_tokens: int = Field(64, ge=1)
    problems: int = Field(16, ge=1)


class PRMConfig(Section):
    """GroundedPRM process rewards (docs/algorithms.md#groundedprm-step-scores): a PRM actor on the route
    reward -> prm -> buffer."""
    enabled: bool = False                 # score every step of every sample in the RL loop
    model: str | None = None              # generative PRM checkpoint; None: tool-only (verifier verdicts)
    step_mode: Literal["auto", "blank_line", "step_marker", "newline"] = "auto"
    aggregation: Literal["min", "mean", "last", "product"] = "min"
    weight: float = 1.0                   # total += weight * aggregated process reward
    neutral: float = Field(0.5, ge=0.0, le=1.0)   # score of a step the tool cannot check (tool-only mode)
    right_label: str = "Right"            # label words of the PRM's judge block, as in the training data
    wrong_label: str = "Wrong"
    top_logprobs: int = Field(10, ge=2)
    temperature: float = 0.6
    max_new_tokens: int = 256
    tool_timeout_s: float = 2.0
    tool_memory_mb: int = 512
    num_actors: int = 1
    num_cpus: float = 0.5
    num_gpus: float = 0.0
    mcts: MCTSConfig = Field(default_factory=MCTSConfig)
    search: SearchConfig = Field(default_factory=SearchConfig)


class BufferConfig(Section):
    capacity: int = 64                    # groups; producers block when full
    max_staleness: int = 0                # policy versions; 0 = strictly on-policy


class TrainConfig(Section):
    steps: int = 100
    groups_per_step: int = 8              # prompts per optimizer step (each with G samples)
    seed: int = 0
    run_dir: str = "runs/default"
    progress: bool = True
    # every N steps and at the end (0 = only at the end); a crash loses at most N steps
    checkpoint_every: int = Field(50, ge=0)
    keep_checkpoints: int = Field(2, ge=1)   # newest complete checkpoints kept under <run_dir>/checkpoint
    resume: bool = False                  # continue from the latest checkpoint under <run_dir>/checkpoint
    eval_every: int = 0                   # greedy evaluation on a held-out synthetic split; 0 = off
    eval_networks: int = 10               # networks in that split (8 questions per network and type)
    # stop at the first step boundary after this many minutes of steps (start-up not counted), with the final
    # checkpoint and export as at the end: "as many steps as fit in an hour" (steps stays the upper bound)
    max_minutes: float | None = Field(None, gt=0)


class SFTConfig(Section):
    """`python -m cluster.sft`: supervised fine-tuning on the learner engine (loss on assistant tokens only)."""
    source: Literal["chat", "task_rows"] = "chat"   # chat: sft.path; task_rows: data.* rows' reference_response
    path: str | None = None               # chat JSONL / JSON / parquet with `messages` (source chat)
    eval_fraction: float = Field(0.1, gt=0.0, lt=1.0)   # held-out share of the examples
    epochs: int = Field(1, ge=1)
    batch_size: int = Field(16, ge=1)     # examples per optimizer step
    eval_every: int = Field(0, ge=0)      # steps between held-out evaluations (0: before and after only)
    max_examples: int | None = Field(None, ge=2)
    max_minutes: float | None = Field(None, gt=0)   # stop at the first step after this long (epochs: the bound)
    out_dir: str = "runs/sft"             # metrics.jsonl, summary.json, checkpoint/, model/ (Hugging Face)

    @model_validator(mode="after")
    def _check(self) -> "SFTConfig":
        if self.source == "chat" and not self.path:
            raise ValueError("sft.source=chat needs sft.path (e.g. runs/prm_data/conversations.jsonl)")
        return self


class WaypointConfig(Section):
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    reward: RewardConfig = Field(default_factory=RewardConfig)
    buffer: BufferConfig = Field(default_factory=BufferConfig)
    algorithm: AlgorithmConfig = Field(default_factory=AlgorithmConfig)
    learner: LearnerConfig = Field(default_factory=LearnerConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    prm: PRMConfig = Field(default_factory=PRMConfig)
    sft: SFTConfig | None = None

    @model_validator(mode="after")
    def _check(self) -> "WaypointConfig":
        if self.model.lora is not None and self.learner.zero_stage == 3:
            raise ValueError("model.lora with learner.zero_stage=3: the adapters are small and the merged weights "
                             "are built on every rank; use zero_stage 0-2 with LoRA")
        if self.algorithm.process.coef > 0 and not self.prm.enabled:
            raise ValueError("algorithm.process.coef > 0 places PRM step scores on tokens: set prm.enabled=true")
        if self.data.task == "math" and self.train.eval_every:
            raise ValueError("train.eval_every runs the map-question evaluation; for math use python -m cluster.search")
        return self


def _describe(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            lines.append(f"{source}: unknown key '{key}'")
        else:
            lines.append(f"{source}: '{key}': {e['msg']}")
    return "\n".join(lines)


def parse_override(text: str) -> tuple[list[str], Any]:
    """`section.key=value` -> (["section", "key"], value parsed as YAML)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected section.key=value")
    key, raw = text.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise ConfigError(f"--set {text!r}: empty key")
    if not raw.strip():
        return parts, ""
    try:
        value = yaml.safe_load(raw)
    except (yaml.YAMLError, RecursionError) as e:   # RecursionError: thousands of nested brackets
        raise ConfigError(f"--set {'.'.join(parts)}: value is not valid YAML: {_first_line(e)}") from None
    bad = _non_finite_key(value, parts)
    if bad is not None:
        raise ConfigError(f"--set {bad}: not a finite number (nan and inf are never a usable setting)")
    return parts, value


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def _non_finite_key(value: Any, parts: list[str]) -> str | None:
    """Dotted key of the first NaN/inf float under `value` (iterative: YAML can nest deeper than the stack;
    each container once: a YAML alias can make a structure contain itself)."""
    stack, seen = [(value, parts)], set()
    while stack:
        node, at = stack.pop()
        if isinstance(node, float) and not math.isfinite(node):
            return ".".join(at)
        if isinstance(node, (dict, list)):
            if id(node) in seen:
                continue
            seen.add(id(node))
        if isinstance(node, dict):
            stack.extend((v, [*at, str(k)]) for k, v in node.items())
        elif isinstance(node, list):
            stack.extend((v, [*at, str(i)]) for i, v in enumerate(node))
    return None


def apply_override(tree: dict, parts: list[str], value: Any) -> None:
    node = tree
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {'.'.join(parts)}: '{p}' is not a section")
    node[parts[-1]] = value


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> WaypointConfig:
    """Read YAML (or defaults when path is None), apply `--set` overrides, validate everything."""
    tree: dict = {}
    source = "<defaults>"
    if path is not None:
        source = str(path)
        try:
            text = Path(path).read_text()
        except (OSError, UnicodeDecodeError) as e:     # UnicodeDecodeError: a binary file
            raise ConfigError(f"cannot read config {path}: {e}") from None
        try:
            tree = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from None
        except RecursionError:
            raise ConfigError(f"{path}: not valid YAML: nested too deeply") from None
        if not isinstance(tree, dict):
            raise ConfigError(f"{path}: top level must be a mapping of sections")
        bad = _non_finite_key(tree, [])
        if bad is not None:
            raise ConfigError(f"{path}: '{bad}': not a finite number (nan and inf are never a usable setting)")
    try:
        WaypointConfig.model_validate(tree)
    except ValidationError as e:
        raise ConfigError(_describe(e, source)) from None
    for text in overrides or []:
        parts, value = parse_override(text)
        apply_override(tree, parts, value)
    try:
        return WaypointConfig.model_validate(tree)
    except ValidationError as e:
        raise ConfigError(_describe(e, "--set")) from None


DEFAULT_CONFIG = "configs/cpu_tiny.yaml"


def add_config_args(ap) -> None:
    """`--config` and repeatable `--set section.key=value` on an argparse parser (every CLI takes both)."""
    ap.add_argument("--config", default=DEFAULT_CONFIG, help=f"YAML config (default {DEFAULT_CONFIG})")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="override one config value; repeatable")


def config_from_args(args) -> WaypointConfig | None:
    """The validated config, or None after printing why it is unusable (the CLI then exits with 2)."""
    import sys
    try:
        return load_config(args.config, args.overrides)
    except ConfigError as e:
        print(f"config error:\n{e}", file=sys.stderr)
        return None
