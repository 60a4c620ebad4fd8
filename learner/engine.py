"""The learner: a DeepSpeed engine around the policy. It knows no algorithm: advantages and the per-token
loss come from the configured `AlgorithmPipeline` (learner/algorithms/).

One rollout batch -> `ppo_epochs` passes over its mini-batches of `ppo_mini_batch_size` groups, one optimizer
step per mini-batch (the verl recipe). Gradients are exact over each *mini-batch* whatever the sharding: every
micro-batch loss is its aggregation numerator divided by the normaliser of the whole mini-batch (its valid
tokens, or its sequences), times (accumulation steps x world size), which undoes DeepSpeed's division by the
accumulation steps and its average over ranks.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from data.trajectory import TrajectoryGroup
from learner.algorithms.base import Advantages
from learner.algorithms.config import AlgorithmConfig
from learner.algorithms.pipeline import AlgorithmPipeline
from learner.batch import SampleRow, batch_stats, micro_batch, mini_normaliser, sample_rows, segments
from learner.config import LearnerConfig, LoRAConfig
from learner.forward import resolve_forward_mode, response_logprobs
from learner.losses import aggregate_sum, low_var_kl, masked_mean
from learner.tiny_models import vision_token_ids as blocked_token_ids


def ds_config(micro: int, accum: int, world: int, lr: float, weight_decay: float, betas, max_grad_norm: float,
              zero_stage: int, bf16: bool, offload_optimizer: bool = False, offload_params: bool = False,
              eps: float = 1e-8) -> dict:
    """DeepSpeed config. Offload (ZeRO-Offload): optimizer states and the optimizer step go to pinned CPU memory
    (any ZeRO stage 1-3); parameters too under ZeRO-3 only. Both are rejected by cluster.config otherwise, and
    checked here again for direct callers."""
    if offload_params and zero_stage != 3:
        raise ValueError(f"offload_params needs ZeRO stage 3, got {zero_stage}")
    if offload_optimizer and zero_stage == 0:
        raise ValueError("offload_optimizer needs ZeRO stage 1, 2 or 3")
    zero: dict = {"stage": zero_stage}
    if offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
    if offload_params:
        zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    params = {"lr": lr, "weight_decay": weight_decay, "betas": list(betas), "eps": eps}
    if not offload_optimizer:
        # torch_adam: torch's AdamW. Without it DeepSpeed builds FusedAdam (a CUDA kernel compiled by nvcc on first
        # use; on the CPU it would compile a kernel for a minute). With optimizer offload DeepSpeed's docs want its
        # own DeepSpeedCPUAdam (5-7x faster than torch's Adam on the CPU), which it picks for a config "AdamW"
        # exactly when torch_adam is absent; it is a C++ op built on first use (or at install, DS_BUILD_CPU_ADAM=1).
        params["torch_adam"] = True
    return {
        "train_micro_batch_size_per_gpu": micro,
        "gradient_accumulation_steps": accum,
        "train_batch_size": micro * accum * world,
        "gradient_clipping": max_grad_norm,
        "zero_optimization": zero,
        "optimizer": {"type": "AdamW", "params": params},
        "bf16": {"enabled": bf16},
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }


def micro_split(n: int, max_micro: int) -> tuple[int, int]:
    """(micro batch size, accumulation steps) with micro * steps == n and micro <= max_micro."""
    for steps in range(max(1, -(-n // max_micro)), n + 1):
        if n % steps == 0:
            return n // steps, steps
    return 1, n


@dataclass
class LearnerSpec:
    """Everything a learner rank is built from (the driver builds one and every rank receives it)."""
    model_path: str
    vision: bool
    algorithm: AlgorithmConfig
    learner: LearnerConfig
    temperature: float            # the rollout's: the learner divides logits by it too
    max_new_tokens: int           # the generation budget (Dr. GRPO's normaliser)
    group_size: int
    groups_per_step: int
    dtype: str = "float32"
    attn_implementation: str = "sdpa"
    lora: LoRAConfig | None = None    # train LoRA adapters only (learner/lora.py)


class PolicyLearner:
    def __init__(self, spec: LearnerSpec, rank: int = 0, world_size: int = 1):
        import deepspeed
        from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoTokenizer

        from learner.model_zoo import resolve_attn_implementation
        learner, algorithm, vision, dtype = spec.learner, spec.algorithm, spec.vision, spec.dtype
        temperature, max_new_tokens = spec.temperature, spec.max_new_tokens
        group_size, groups_per_step, model_path = spec.group_size, spec.groups_per_step, spec.model_path
        torch.set_num_threads(learner.torch_threads)
        self.cfg, self.algo = learner, algorithm
        self.pipeline = AlgorithmPipeline(algorithm)
        self.vision, self.temperature, self.max_new_tokens = vision, temperature, max_new_tokens
        self.model_path = model_path
        self.lora = spec.lora                   # None: full fine-tuning
        self.rank, self.world = rank, world_size
        cls = AutoModelForImageTextToText if vision else AutoModelForCausalLM
        # bf16 weights on GPU (model.dtype); attention "auto" -> flash_attention_2 where it can run, else sdpa
        self.attn_implementation = resolve_attn_implementation(spec.attn_implementation, dtype)
        self.forward_mode = resolve_forward_mode(learner.forward, self.attn_implementation)
        kw = {"dtype": getattr(torch, dtype), "attn_implementation": self.attn_implementation}
        model = cls.from_pretrained(model_path, **kw)
        if learner.gradient_checkpointing:
            model.gradient_checkpointing_enable()
        if self.lora is not None:
            from learner.lora import apply_lora
            model = apply_lora(model, self.lora)
            if learner.gradient_checkpointing:   # frozen embeddings: checkpointed blocks need inputs with grad
                model.enable_input_require_grads()
        tok = AutoTokenizer.from_pretrained(model_path)
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        self.blocked_ids = blocked_token_ids(tok) if vision else None
        self.kl_coef = algorithm.effective_kl_coef
        self.ref_model = None
        if self.kl_coef > 0 and self.lora is None:   # frozen initial policy for low_var_kl (LoRA: adapters off)
            # on the device DeepSpeed puts the policy on (cuda:<local rank> on GPU, cpu on the CPU accelerator)
            from deepspeed.accelerator import get_accelerator
            self.ref_model = cls.from_pretrained(model_path, **kw).to(get_accelerator().current_device_name())
            self.ref_model.eval().requires_grad_(False)
        self.seqs_per_step = groups_per_step * group_size
        mini_groups = learner.ppo_mini_batch_size or groups_per_step
        if groups_per_step % mini_groups:
            raise ValueError(f"learner.ppo_mini_batch_size={mini_groups} groups does not divide the "
                             f"{groups_per_step} groups of a step")
        self.mini_seqs = mini_groups * group_size
        if self.mini_seqs % world_size:
            raise ValueError(f"a mini-batch of {self.mini_seqs} sequences does not split over {world_size} learners")
        self.local_seqs = self.mini_seqs // world_size
        self.micro, self.accum = micro_split(self.local_seqs, learner.micro_batch_size)
        cfg = ds_config(self.micro, self.accum, world_size, learner.lr, learner.weight_decay, learner.betas,
                        learner.max_grad_norm, learner.zero_stage, dtype == "bfloat16",
                        offload_optimizer=learner.offload_optimizer, offload_params=learner.offload_params,
                        eps=learner.adam_eps)
        trainable = [p for p in model.parameters() if p.requires_grad]   # LoRA: optimizer state for adapters only
        self.engine, *_ = deepspeed.initialize(model=model, model_parameters=trainable, config=cfg)
        self.zero_stage = learner.zero_stage
        self.version = 0

    # ---- one rollout batch -------------------------------------------------------------------------
    def train_step(self, groups: list[TrajectoryGroup]) -> dict:
        adv = self.pipeline.advantages(groups)
        rows = sample_rows(groups, adv)
        if len(rows) != self.seqs_per_step:
            raise ValueError(f"batch has {len(rows)} sequences, learner was built for {self.seqs_per_step}")
        if self.cfg.old_logprobs == "recompute":
            self._recompute_old_logprobs(rows)
        self.engine.train()
        acc: dict[str, list[float]] = {}
        for _ in range(self.cfg.ppo_epochs):
            for start in range(0, len(rows), self.mini_seqs):
                mini = rows[start:start + self.mini_seqs]
                norm = mini_normaliser(mini, self.algo.loss_agg)
                mine = mini[self.rank * self.local_seqs:(self.rank + 1) * self.local_seqs]
                for m in range(self.accum):
                    loss, st = self._micro_loss(mine[m * self.micro:(m + 1) * self.micro], norm)
                    self.engine.backward(loss)
                    self.engine.step()      # DeepSpeed steps the optimizer at the end of each mini-batch only
                    for k, v in st.items():
                        acc.setdefault(k, []).append(v)
        self.version += 1
        stats = batch_stats(groups, adv, self.version - 1)
        stats.update({k: float(np.mean(v)) for k, v in acc.items()})
        stats["learner/updates_per_batch"] = float(self.cfg.ppo_epochs * (len(rows) // self.mini_seqs))
        gn = self.engine.get_global_grad_norm()
        stats["grad_norm"] = float(gn) if gn is not None else float("nan")
        stats["learner_version"] = self.version
        # not a metric: what the step consumed, for the curriculum (the controller pops it before logging)
        stats["groups"] = [{"type": str(g.row.get("type", "")),
                            "accuracy": float(np.mean(g.rewards.get("accuracy", np.zeros(g.size))))}
                           for g in groups]
        return stats

    @torch.no_grad()
    def eval_loss(self, groups: list[TrajectoryGroup]) -> dict:
        """Token-mean negative log-likelihood of the groups' responses under the current policy (held-out SFT
        loss). Every rank runs every micro-batch (ZeRO-3 forwards are collective)."""
        self.engine.eval()
        rows = sample_rows(groups, Advantages(np.zeros((len(groups), groups[0].size))))
        nll, tokens = 0.0, 0
        for start in range(0, len(rows), self.micro):
            mb = micro_batch(rows[start:start + self.micro], self.engine.device)
            nll += float((-self._logprobs(self.engine.module, mb.segments) * mb.mask).sum())
            tokens += int(mb.mask.sum())
        return {"loss": nll / max(tokens, 1), "tokens": tokens}

    def _logprobs(self, model, segs) -> torch.Tensor:
        return response_logprobs(model, segs, self.forward_mode, self.temperature, self.vision, self.pad_id,
                                 self.blocked_ids)

    @torch.no_grad()
    def _recompute_old_logprobs(self, rows: list[SampleRow]) -> None:
        """verl's old log-probs: the learner's own, under the weights before this batch's first update. Each rank
        computes its shard of every mini-batch, as in training (ZeRO-3 gathers stay collective), then all share."""
        self.engine.eval()
        mine: list[tuple[int, np.ndarray]] = []
        for start in range(0, len(rows), self.mini_seqs):
            for m in range(self.accum):
                lo = start + self.rank * self.local_seqs + m * self.micro
                part = rows[lo:lo + self.micro]
                lp = self._logprobs(self.engine.module, segments(part)).float().cpu().numpy()
                mine += [(lo + k, lp[k, :len(r.token_ids)]) for k, r in enumerate(part)]
        every = [mine]
        if self.world > 1:
            import torch.distributed as dist
            every = [None] * self.world
            dist.all_gather_object(every, mine)
        for part in every:
            for idx, lp in part:
                rows[idx].old_logprobs = lp

    def _micro_loss(self, rows: list[SampleRow], norm: float):
        mb = micro_batch(rows, self.engine.device)
        logp = self._logprobs(self.engine.module, mb.segments)
        per_token, stats = self.pipeline.token_loss(logp, mb.old_logprobs, mb.advantages, mb.mask, mb.inputs)
        agg = self.algo.loss_agg
        loss = aggregate_sum(per_token, mb.mask, agg, self.max_new_tokens)
        if self.kl_coef > 0:
            with torch.no_grad(), self._initial_policy() as ref_model:
                ref = self._logprobs(ref_model, mb.segments)
            kl = low_var_kl(logp, ref)
            loss = loss + self.kl_coef * aggregate_sum(kl, mb.mask, agg, self.max_new_tokens)
            stats["loss/kl"] = float(masked_mean(kl.detach(), mb.mask))
        with torch.no_grad():
            log_ratio = logp.detach() - mb.old_logprobs
            stats["loss/approx_kl"] = float(masked_mean(0.5 * log_ratio ** 2, mb.mask))
            stats["loss/ratio_mean"] = float(masked_mean(torch.exp(log_ratio), mb.mask))
        return loss * (self.accum * self.world / max(norm, 1.0)), stats

    @contextmanager
    def _initial_policy(self):
        """The KL reference: the frozen copy, or under LoRA the same model with its adapters switched off."""
        if self.lora is not None:
            with self.engine.module.disable_adapter():
                yield self.engine.module
        else:
            yield self.ref_model

    # ---- weights and checkpoints -------------------------------------------------------------------
    def full_state_dict(self) -> dict[str, np.ndarray] | None:
        """Full weights on rank 0 (None elsewhere). ZeRO-3 shards are gathered; all ranks must call. Under LoRA
        the base model's names with the adapters merged in."""
        module = self.engine.module
        if self.lora is not None:
            from learner.lora import merged_items
            state = {k: v.float().cpu().numpy() for k, v in merged_items(module)}
        elif self.zero_stage == 3:
            import deepspeed
            with deepspeed.zero.GatheredParameters(list(module.parameters()), modifier_rank=None):
                state = {k: v.detach().float().cpu().numpy().copy() for k, v in module.state_dict().items()}
        else:
            state = {k: v.detach().float().cpu().numpy() for k, v in module.state_dict().items()}
        return state if self.rank == 0 else None

    def save(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)
        # LoRA: the adapters and their optimizer state only; the frozen base comes from model_path on load
        self.engine.save_checkpoint(path, tag="learner", client_state={"version": self.version},
                                    exclude_frozen_parameters=self.lora is not None)
        if self.lora is not None and self.rank == 0:   # what cluster.export needs to merge the adapters
            from learner.hf_export import write_lora_config
            write_lora_config(path, self.lora)

    def export_hf(self, out_dir: str) -> str | None:
        """A save_pretrained model directory of the current policy (LoRA merged); all ranks call (ZeRO-3)."""
        state = self.full_state_dict()
        if state is None:
            return None
        from learner.hf_export import save_hf_policy
        return save_hf_policy(state, self.model_path, out_dir)

    def load(self, path: str) -> int:
        _, client = self.engine.load_checkpoint(path, tag="learner", load_module_strict=self.lora is None)
        self.version = int((client or {}).get("version", 0))
        return self.version

