"""The learner: a DeepSpeed engine around the policy, one optimizer step per batch of scored groups.

Gradients are exact over the *global* batch whatever the sharding: each micro-batch loss is rescaled by
(its normaliser / the global normaliser) x (accumulation steps x world size), undoing DeepSpeed's division
by accumulation steps and its average over ranks.
"""
from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F

from data.trajectory import TrajectoryGroup
from learner.batch import SampleRef, batch_stats, collate, compute_advantages, flatten, to_device
from learner.losses import add_kl_penalty, copo_loss, policy_loss
from learner.tiny_models import vision_token_ids as blocked_token_ids


COPO_LOSS_STATS = ("global_loss_share", "gate_mean")


def ds_config(micro: int, accum: int, world: int, lr: float, weight_decay: float, betas, max_grad_norm: float,
              zero_stage: int, bf16: bool, offload_optimizer: bool = False, offload_params: bool = False) -> dict:
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
    params = {"lr": lr, "weight_decay": weight_decay, "betas": list(betas)}
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


def token_logprobs(model, batch: dict, temperature: float, vision: bool,
                   blocked_ids: list[int] | None = None) -> torch.Tensor:
    """log pi(response token t | prefix) for each response column, shape [B, R].

    `blocked_ids` are tokens the rollout never samples (image placeholders): the behaviour distribution is
    renormalised without them, so the learner's must be too, or every ratio is off by log(1 - p_blocked).
    """
    p = int(batch["prompt_len"])
    r = batch["response_mask"].shape[1]
    kwargs = {k: v for k, v in batch.items() if k in ("pixel_values", "image_grid_thw", "mm_token_type_ids")}
    if not vision:   # multimodal rope computes its own positions from the mask
        kwargs["position_ids"] = batch["position_ids"]
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False,
                   **kwargs).logits
    logits = logits[:, p - 1:p - 1 + r].float() / temperature
    if blocked_ids:
        logits[..., blocked_ids] = float("-inf")
    return gather_logprobs(logits, batch["input_ids"][:, p:p + r])


def gather_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[target] at every position: [..., V] x [...] -> [...]."""
    return torch.gather(F.log_softmax(logits, dim=-1), -1, targets.unsqueeze(-1)).squeeze(-1)


class PolicyLearner:
    def __init__(self, model_path: str, vision: bool, algo: dict, learner: dict, temperature: float,
                 max_new_tokens: int, seqs_per_step: int, rank: int = 0, world_size: int = 1, dtype="float32",
                 attn_implementation: str = "sdpa"):
        import deepspeed
        from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoTokenizer
        torch.set_num_threads(learner.get("torch_threads", 1))
        self.algo, self.vision, self.temperature = algo, vision, temperature
        self.max_new_tokens = max_new_tokens
        self.rank, self.world = rank, world_size
        from learner.model_zoo import resolve_attn_implementation
        cls = AutoModelForImageTextToText if vision else AutoModelForCausalLM
        # bf16 weights on GPU (model.dtype); attention "auto" -> flash_attention_2 where it can run, else sdpa
        self.attn_implementation = resolve_attn_implementation(attn_implementation, dtype)
        kw = {"dtype": getattr(torch, dtype), "attn_implementation": self.attn_implementation}
        model = cls.from_pretrained(model_path, **kw)
        if learner.get("gradient_checkpointing"):
            model.gradient_checkpointing_enable()
        tok = AutoTokenizer.from_pretrained(model_path)
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        self.blocked_ids = blocked_token_ids(tok) if vision else None
        self.ref_model = None
        if algo.get("kl_coef", 0.0) > 0:   # frozen initial policy for low_var_kl
            # on the device DeepSpeed puts the policy on (cuda:<local rank> on GPU, cpu on the CPU accelerator)
            from deepspeed.accelerator import get_accelerator
            self.ref_model = cls.from_pretrained(model_path, **kw).to(get_accelerator().current_device_name())
            self.ref_model.eval().requires_grad_(False)
        if seqs_per_step % world_size:
            raise ValueError(f"{seqs_per_step} sequences per step do not split over {world_size} learners")
        self.local_seqs = seqs_per_step // world_size
        self.micro, self.accum = micro_split(self.local_seqs, learner["micro_batch_size"])
        cfg = ds_config(self.micro, self.accum, world_size, learner["lr"], learner["weight_decay"],
                        learner["betas"], learner["max_grad_norm"], learner["zero_stage"], dtype == "bfloat16",
                        offload_optimizer=learner.get("offload_optimizer", False),
                        offload_params=learner.get("offload_params", False))
        self.engine, *_ = deepspeed.initialize(model=model, model_parameters=model.parameters(), config=cfg)
        self.zero_stage = learner["zero_stage"]
        self.version = 0

    # ---- one optimizer step ------------------------------------------------------------------------
    def train_step(self, groups: list[TrajectoryGroup]) -> dict:
        adv = compute_advantages(groups, self.algo)
        items = flatten(groups, adv)
        if len(items) != self.local_seqs * self.world:
            raise ValueError(f"batch has {len(items)} sequences, learner was built for "
                             f"{self.local_seqs * self.world}")
        mine = items[self.rank * self.local_seqs:(self.rank + 1) * self.local_seqs]
        global_norm = self._normaliser(items)
        self.engine.train()
        acc: dict[str, float] = {}
        for m in range(self.accum):
            micro = mine[m * self.micro:(m + 1) * self.micro]
            loss, st = self._micro_loss(micro, global_norm)
            self.engine.backward(loss)
            self.engine.step()
            for k, v in st.items():
                acc[k] = acc.get(k, 0.0) + v / self.accum
        self.version += 1
        stats = batch_stats(groups, adv, self.version - 1, self.algo.get("copo", {}).get("mode", ""))
        stats.update({(f"copo/{k}" if k in COPO_LOSS_STATS else f"loss/{k}"): v for k, v in acc.items()})
        gn = self.engine.get_global_grad_norm()
        stats["grad_norm"] = float(gn) if gn is not None else float("nan")
        stats["learner_version"] = self.version
        # not a metric: what the step consumed, for the curriculum (the controller pops it before logging)
        stats["groups"] = [{"type": str(g.row.get("type", "")),
                            "accuracy": float(np.mean(g.rewards.get("accuracy", np.zeros(g.size))))}
                           for g in groups]
        return stats

    def _normaliser(self, items: list[SampleRef]) -> float:
        if self.algo["loss_agg"] == "token-mean":
            return float(sum(len(it.group.samples[it.index].token_ids) for it in items))
        return float(len(items))

    def _micro_loss(self, micro: list[SampleRef], global_norm: float):
        batch = to_device(collate(micro, self.pad_id), self.engine.device)
        mask = batch["response_mask"]
        logp = token_logprobs(self.engine.module, batch, self.temperature, self.vision, self.blocked_ids)
        ref_lp = None
        if self.ref_model is not None:
            with torch.no_grad():
                ref_lp = token_logprobs(self.ref_model, batch, self.temperature, self.vision, self.blocked_ids)
        a = self.algo
        if a["advantage"] == "copo":   # gated blend of the local and global dual-clip losses
            c = a["copo"]
            loss, st = copo_loss(logp, batch["old_logprobs"], batch["advantages"], batch["global_advantages"],
                                 batch["gates"], mask, batch["correct"], c["mode"], a["clip_low"], a["clip_high"],
                                 c["dual_clip"], a["loss_agg"], c["global_loss_coef"], self.max_new_tokens)
            loss, st = add_kl_penalty(loss, st, logp, ref_lp, mask, a["kl_coef"], a["loss_agg"], self.max_new_tokens)
        else:
            loss, st = policy_loss(logp, batch["old_logprobs"], batch["advantages"], mask, a["clip_low"],
                                   a["clip_high"], a["loss_agg"], max_len=self.max_new_tokens, ref_logprobs=ref_lp,
                                   kl_coef=a["kl_coef"])
        local_norm = float(mask.sum()) if self.algo["loss_agg"] == "token-mean" else float(len(micro))
        scale = (local_norm / max(global_norm, 1.0)) * self.accum * self.world
        return loss * scale, st

    # ---- weights and checkpoints -------------------------------------------------------------------
    def full_state_dict(self) -> dict[str, np.ndarray] | None:
        """Full weights on rank 0 (None elsewhere). ZeRO-3 shards are gathered; all ranks must call."""
        module = self.engine.module
        if self.zero_stage == 3:
            import deepspeed
            with deepspeed.zero.GatheredParameters(list(module.parameters()), modifier_rank=None):
                state = {k: v.detach().float().cpu().numpy().copy() for k, v in module.state_dict().items()}
        else:
            state = {k: v.detach().float().cpu().numpy() for k, v in module.state_dict().items()}
        return state if self.rank == 0 else None

    def save(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)
        self.engine.save_checkpoint(path, tag="learner", client_state={"version": self.version})

    def load(self, path: str) -> int:
        _, client = self.engine.load_checkpoint(path, tag="learner")
        self.version = int((client or {}).get("version", 0))
        return self.version
