"""GRPO-CARE's reference model (arXiv 2506.16141; docs/algorithms.md#grpo-care-reference-model), without Ray.

    theta_ref <- d * theta_ref + (1 - d) * theta        every `every` optimizer steps (d = 0.995, every = 10)
    p_i = exp( mean_{t in answer span} log pi_ref(o_{i,t} | q, o_{i,<t}) )

The reference starts equal to the initial policy. The answer span is the content of the sample's `<answer>`
tag (or last `\\boxed{}`), located in characters by `rewards.answer.answer_char_span` and mapped to the
sampled tokens through tokenizer offsets, not the released code's fixed "-3 tokens" heuristic.
"""
from __future__ import annotations

import json
import os
from typing import Mapping

import numpy as np
import torch

from data.trajectory import TrajectoryGroup
from learner.forward import Segment, resolve_forward_mode, response_logprobs
from learner.tiny_models import vision_token_ids
from learner.token_offsets import token_char_ends
from rewards.answer import answer_char_span


@torch.no_grad()
def ema_update_(ref: Mapping[str, torch.Tensor], policy: Mapping[str, np.ndarray], decay: float) -> None:
    """In place: ref[n] <- decay * ref[n] + (1 - decay) * policy[n] for every name in `ref`."""
    missing = [n for n in ref if n not in policy]
    if missing:
        raise KeyError(f"policy weights lack {len(missing)} reference tensors, e.g. {missing[:3]}")
    for name, t in ref.items():
        src = policy[name]   # numpy (object-store transport) or a torch tensor (collective transport)
        src = (src if torch.is_tensor(src) else torch.as_tensor(np.asarray(src))).to(dtype=t.dtype, device=t.device)
        t.mul_(decay).add_(src, alpha=1.0 - decay)


def ema_due(version: int, last_version: int, every: int) -> bool:
    """An EMA step happens after optimizer steps every, 2*every, ... and once per version (resume-safe)."""
    return version > last_version and version % every == 0


def missed_updates(last_version: int, version: int, every: int) -> int:
    """EMA steps due after `last_version` up to and including `version` (the versions v with v % every == 0)."""
    return max(0, version // every - last_version // every)


def answer_token_mask(ends: list[int], span: tuple[int, int] | None) -> np.ndarray:
    """[T] bool: tokens whose characters [ends[k-1], ends[k]) overlap the answer span [a, b)."""
    mask = np.zeros(len(ends), dtype=bool)
    if span is None or span[0] >= span[1]:
        return mask
    a, b = span
    start = 0
    for k, end in enumerate(ends):
        mask[k] = start < b and end > a
        start = end
    return mask


class EMAReference:
    def __init__(self, model_path: str, vision: bool, decay: float = 0.995, every: int = 10, batch_size: int = 16,
                 dtype: str = "float32", torch_threads: int = 1, attn_implementation: str = "auto",
                 forward_mode: str = "auto"):
        from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoTokenizer

        from learner.model_zoo import resolve_attn_implementation
        torch.set_num_threads(torch_threads)
        cls = AutoModelForImageTextToText if vision else AutoModelForCausalLM
        # auto: flash_attention_2 on a GPU with flash_attn in bf16, else sdpa (what transformers picks on the CPU)
        self.attn_implementation = resolve_attn_implementation(attn_implementation, dtype)
        # auto: the prompt encoded once for all of a group's samples where that is exact (sdpa, eager)
        self.forward_mode = resolve_forward_mode(forward_mode, self.attn_implementation)
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")   # Ray sets the actor's GPU
        self.model = cls.from_pretrained(model_path, dtype=getattr(torch, dtype),
                                         attn_implementation=self.attn_implementation).eval().requires_grad_(False)
        self.model.to(self.device)
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None \
            else self.tokenizer.eos_token_id
        self.blocked_ids = vision_token_ids(self.tokenizer) if vision else None
        self.vision, self.decay, self.every, self.batch_size = vision, decay, every, batch_size
        self.params = dict(self.model.named_parameters())   # tied weights appear once, so each moves once
        # bf16 cannot hold a 0.5% step: keep the average in fp32 and copy it into the model after each update
        self.master = None if dtype == "float32" else {n: p.detach().float().clone() for n, p in self.params.items()}
        self.version = 0   # policy version last absorbed (the reference starts as the initial policy)
        self.updates = 0

    # ---- EMA ---------------------------------------------------------------------------------------
    def observe(self, policy_state: Mapping[str, np.ndarray] | None, version: int) -> bool:
        """Called with the policy's weights after optimizer step `version`; updates when due."""
        if not ema_due(version, self.version, self.every):
            self.version = max(self.version, version)
            return False
        if policy_state is None:
            raise ValueError(f"EMA update due at version {version} but no policy weights were given")
        self._absorb(policy_state, self.decay)
        self.version, self.updates = version, self.updates + 1
        return True

    def _absorb(self, policy_state: Mapping[str, np.ndarray], decay: float) -> None:
        """theta_ref <- decay * theta_ref + (1 - decay) * theta, in the fp32 master where there is one."""
        target = self.master if self.master is not None else self.params
        ema_update_(target, policy_state, decay)
        if self.master is not None:
            with torch.no_grad():
                for n, p in self.params.items():
                    p.copy_(self.master[n])

    def catch_up(self, policy_state: Mapping[str, np.ndarray], version: int) -> int:
        """After a restart from an older EMA state: the k steps due since, taken with the policy weights of
        `version` in place of the k policies in between, theta_ref <- d^k theta_ref + (1 - d^k) theta. Exact
        when k = 0, or when those policies were equal; returns k (the approximated steps)."""
        k = missed_updates(self.version, version, self.every)
        if k:
            self._absorb(policy_state, self.decay ** k)
            self.updates += k
        self.version = max(self.version, version)
        return k

    # ---- likelihoods -------------------------------------------------------------------------------
    @torch.no_grad()
    def answer_likelihoods(self, group: TrajectoryGroup) -> tuple[np.ndarray, int]:
        """(p [G], samples without an answer span). A sample without one gets p = NaN: there is no answer to
        be sure of, and a number would pass for a likelihood downstream."""
        masks = []
        for s in group.samples:
            text, ends = token_char_ends(self.tokenizer, s.token_ids)
            masks.append(answer_token_mask(ends, answer_char_span(text)))
        p = np.full(group.size, np.nan, dtype=np.float64)
        todo = [i for i, m in enumerate(masks) if m.any()]
        for lo in range(0, len(todo), self.batch_size):
            idx = todo[lo:lo + self.batch_size]
            segment = Segment(group.prompt_ids, [group.samples[i].token_ids for i in idx], group.mm_inputs)
            # temperature 1: the reference's own distribution, as the paper scores it
            logp = response_logprobs(self.model, [segment], self.forward_mode, 1.0, self.vision, self.pad_id,
                                     self.blocked_ids).double().cpu().numpy()
            for row, i in enumerate(idx):
                p[i] = float(np.exp(logp[row, :len(masks[i])][masks[i]].mean()))
        return p, group.size - len(todo)

    # ---- checkpoint --------------------------------------------------------------------------------
    def save(self, path: str) -> None:
        from safetensors.torch import save_file
        os.makedirs(path, exist_ok=True)
        src = self.master if self.master is not None else self.params
        save_file({n: t.detach().contiguous() for n, t in src.items()}, os.path.join(path, "ema.safetensors"))
        with open(os.path.join(path, "ema_state.json"), "w") as f:
            json.dump({"version": self.version, "updates": self.updates, "decay": self.decay,
                       "every": self.every}, f)

    def load(self, path: str) -> int:
        from safetensors.torch import load_file
        state = load_file(os.path.join(path, "ema.safetensors"))
        with torch.no_grad():
            for n, p in self.params.items():
                p.copy_(state[n].to(p.dtype))
                if self.master is not None:
                    self.master[n].copy_(state[n])
        with open(os.path.join(path, "ema_state.json")) as f:
            meta = json.load(f)
        self.version, self.updates = int(meta["version"]), int(meta["updates"])
        return self.version
