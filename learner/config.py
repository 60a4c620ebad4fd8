"""The learner's typed config sections. They travel to the Ray learner workers as objects (pydantic models
pickle), so a knob is read where it is used, by name, and a misspelt key fails when the config is loaded."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

FORWARD_MODES = ("auto", "padded", "packed", "shared_prefix")


class Section(BaseModel):
    """A config section: unknown keys are errors, assignments are validated."""
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class LearnerConfig(Section):
    num_workers: int = 1
    zero_stage: Literal[0, 1, 2, 3] = 2
    backend: Literal["auto", "gloo", "nccl"] = "auto"
    lr: float = 1e-6
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = Field(1e-8, gt=0)
    max_grad_norm: float = 1.0
    micro_batch_size: int = 32            # sequences per forward/backward on one worker
    # The PPO recipe of the verl-based releases: each rollout batch is split into mini-batches of
    # ppo_mini_batch_size prompt groups (None: the whole batch), one optimizer step each, for ppo_epochs passes.
    ppo_mini_batch_size: int | None = Field(None, ge=1)
    ppo_epochs: int = Field(1, ge=1)
    # Where the PPO ratio's denominator comes from: `rollout` = the behaviour log-probs the engine sampled with
    # (free; the exact importance ratio for stale groups); `recompute` = the learner's log-probs under the weights
    # before the first update (verl's choice: the ratio then starts at exactly 1, free of engine/learner kernel
    # and precision differences, at the cost of one extra no-grad forward per batch).
    old_logprobs: Literal["rollout", "recompute"] = "rollout"
    # Training forward (learner/forward.py): shared_prefix encodes each group's prompt once; auto picks it where
    # it is exact with the attention implementation (sdpa, eager), else padded.
    forward: Literal[FORWARD_MODES] = "auto"
    gradient_checkpointing: bool = False
    # ZeRO-Offload (DeepSpeed): optimizer states and step on the CPU (stage 1-3), parameters too (stage 3 only)
    offload_optimizer: bool = False
    offload_params: bool = False
    weight_sync: Literal["object_store", "collective"] = "object_store"   # collective: bucketed NCCL/gloo broadcast
    weight_bucket_mb: float = Field(256.0, gt=0)   # collective: bytes per broadcast bucket
    weight_sync_timeout_s: float = Field(300.0, gt=0)   # collective: deadline of every rendezvous and broadcast
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    torch_threads: int = 1

    @model_validator(mode="after")
    def _check(self) -> "LearnerConfig":
        if self.offload_params and self.zero_stage != 3:
            raise ValueError(f"learner.offload_params needs learner.zero_stage=3 (DeepSpeed offloads parameters "
                             f"only under ZeRO-3), got zero_stage={self.zero_stage}")
        if self.offload_optimizer and self.zero_stage == 0:
            raise ValueError("learner.offload_optimizer needs learner.zero_stage 1, 2 or 3 (ZeRO-Offload)")
        return self


class LoRAConfig(Section):
    """LoRA adapters (PEFT) on the policy: the learner trains and checkpoints the adapters only; every weight
    sync and export carries merged weights W + (alpha / r) B A under the base model's names."""
    r: int = Field(16, ge=1)
    alpha: float = Field(32.0, gt=0)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj",
                                                               "gate_proj", "up_proj", "down_proj"])
