"""RolloutActor: one generation engine (`vllm` or `hf`) that turns task rows into TrajectoryGroups.

Each group carries token ids, behaviour log-probs and the policy version that produced it. New weights
arrive in place (`load_weights`), with no engine restart, and bump the version.
"""
from __future__ import annotations

import time
import uuid

import ray

from actors.generation import Completion, GeneratedSample
from data.trajectory import Sample, TrajectoryGroup
from learner.prompting import encode_prompt, load_processor, tokenizer_of


VLLM_RECEIVER = "actors.vllm_receiver.WeightReceiver"   # the collective transport's receiver in vLLM workers


def make_engine(kind: str, model_path: str, vision: bool, rollout_cfg: dict, seed: int, dtype: str):
    if kind == "vllm":
        from actors.vllm_engine import VLLMEngine
        v = rollout_cfg["vllm"]
        return VLLMEngine(model_path, vision, dtype=dtype, seed=seed, kv_cache_gb=v["kv_cache_gb"],
                          gpu_memory_utilization=v["gpu_memory_utilization"],
                          tensor_parallel_size=v["tensor_parallel_size"], enforce_eager=v["enforce_eager"],
                          max_model_len=v["max_model_len"],
                          worker_extension_cls=VLLM_RECEIVER)
    if kind == "hf":
        from actors.hf_engine import HFEngine
        block = None
        if vision:
            from learner.tiny_models import vision_token_ids
            from transformers import AutoTokenizer
            block = vision_token_ids(AutoTokenizer.from_pretrained(model_path))
        return HFEngine(model_path, vision, dtype=dtype, seed=seed, block_token_ids=block,
                        max_batch_seqs=rollout_cfg.get("hf_max_batch", 32))
    raise ValueError(f"unknown rollout engine {kind!r}; use 'vllm' or 'hf'")


def row_metadata(row: dict) -> dict:
    """The row without its image bytes: what reward actors and logs need."""
    return {k: v for k, v in row.items() if k != "figure"}


class Rollout:
    """The actor's logic without Ray, so it can run inline in tests."""

    def __init__(self, model_path: str, engine: str, vision: bool, rollout_cfg: dict, include_map_text: bool,
                 seed: int = 0, dtype: str = "float32", torch_threads: int = 1, answer_format: str = "boxed"):
        import torch
        torch.set_num_threads(torch_threads)
        self.cfg = rollout_cfg
        self.vision = vision
        self.include_map_text = include_map_text
        self.answer_format = answer_format
        self.processor = load_processor(model_path, vision)
        self.engine = make_engine(engine, model_path, vision, rollout_cfg, seed, dtype)
        self.engine_kind = engine
        self.version = 0

    def generate(self, rows: list[dict], seeds: list[int] | None = None, n: int | None = None,
                 temperature: float | None = None) -> list[TrajectoryGroup]:
        """G = rollout.group_size samples per row at rollout.temperature; n / temperature override them
        (evaluation: n = 1, temperature 0 is greedy)."""
        t0 = time.perf_counter()
        prompts = [encode_prompt(self.processor, r, self.vision, self.include_map_text, self.answer_format)
                   for r in rows]
        n = self.cfg["group_size"] if n is None else n
        temperature = self.cfg["temperature"] if temperature is None else temperature
        outs = self.engine.generate(prompts, n=n, temperature=temperature,
                                    top_p=self.cfg["top_p"], max_new_tokens=self.cfg["max_new_tokens"],
                                    seeds=seeds)
        elapsed = time.perf_counter() - t0
        groups = []
        for row, prompt, samples in zip(rows, prompts, outs):
            groups.append(TrajectoryGroup(
                group_id=uuid.uuid4().hex[:12], prompt_id=str(row.get("id", "")), row=row_metadata(row),
                prompt_ids=list(prompt.input_ids), mm_inputs=prompt.mm_inputs, version=self.version,
                samples=[self._sample(s) for s in samples],
                timing={"generate_s": elapsed / len(rows)}))
        return groups

    def prompt_ids(self, request: dict) -> list[int]:
        """Token ids of a completion request: {"row": task row} (the RL prompt) or {"messages": chat}, then
        "prefix", text the assistant turn already holds (the steps so far), which the model continues."""
        tok = tokenizer_of(self.processor)
        if "row" in request:
            if self.vision:
                raise ValueError("completions from task rows are text-only; use a text policy")
            ids = encode_prompt(self.processor, request["row"], False, self.include_map_text,
                                self.answer_format).input_ids
        else:
            text = tok.apply_chat_template(request["messages"], add_generation_prompt=True, tokenize=False)
            ids = tok(text, add_special_tokens=False)["input_ids"]
        prefix = request.get("prefix", "")
        return list(ids) + (tok(prefix, add_special_tokens=False)["input_ids"] if prefix else [])

    def complete(self, requests: list[dict], n: int = 1, temperature: float = 1.0, max_new_tokens: int = 64,
                 stop: list[str] | None = None, top_logprobs: int = 0,
                 seeds: list[int] | None = None) -> list[list[Completion]]:
        """Free continuations (MCTS steps, PRM rationales, search candidates): n per request."""
        return self.engine.complete([self.prompt_ids(r) for r in requests], n=n, temperature=temperature,
                                    top_p=self.cfg["top_p"], max_new_tokens=max_new_tokens, stop=stop,
                                    top_logprobs=top_logprobs, seeds=seeds)

    def _sample(self, s: GeneratedSample) -> Sample:
        return Sample(list(s.token_ids), [float(x) for x in s.logprobs], s.text, s.finish_reason, self.version)

    # ---- the collective weight transport: vLLM receives inside its (tensor-parallel) workers ----------
    def weight_ranks(self) -> int:
        """Members this engine adds to the weight group: one per vLLM worker, or this process (hf)."""
        return self.cfg["vllm"]["tensor_parallel_size"] if self.engine_kind == "vllm" else 1

    def join_weight_group(self, addr: str, port: int, rank_offset: int, names: list[str], backend: str,
                          timeout_s: float, specs: list, dtype: str, bucket_bytes: int) -> None:
        args = (addr, port, rank_offset, names, backend, timeout_s, specs, dtype, bucket_bytes)
        if self.engine_kind == "vllm":
            self.engine.llm.collective_rpc("waypoint_join_weight_group", args=args)
            return
        from actors.collective import Member
        self.member = Member(*args)

    def receive_weights(self, version: int) -> float:
        t0 = time.perf_counter()
        if self.engine_kind == "vllm":
            self.engine.llm.collective_rpc("waypoint_receive_weights", args=(version,))
            self.engine.llm.reset_prefix_cache()   # cached KV blocks were computed with the old weights
        else:
            self.engine.load_weights(self.member.pairs(version))
        self.version = version
        return time.perf_counter() - t0

    def load_weights(self, state: dict, version: int) -> float:
        t0 = time.perf_counter()
        self.engine.load_weights(state.items())
        self.version = version
        return time.perf_counter() - t0


@ray.remote
class RolloutActor:
    def __init__(self, *args, **kwargs):
        self.impl = Rollout(*args, **kwargs)

    def generate(self, rows: list[dict], seeds: list[int] | None = None, n: int | None = None,
                 temperature: float | None = None):
        """Call with `num_returns=len(rows)`: each group becomes its own object, scored independently."""
        groups = self.impl.generate(rows, seeds, n, temperature)
        return groups[0] if len(groups) == 1 else tuple(groups)

    def load_weights(self, wrapped_state_ref: list, version: int) -> float:
        """`wrapped_state_ref` is `[ref]` to a dict name -> array in the object store."""
        return self.impl.load_weights(ray.get(wrapped_state_ref[0]), version)

    def version(self) -> int:
        return self.impl.version

    def weight_ranks(self) -> int:
        return self.impl.weight_ranks()

    def join_weight_group(self, *args) -> None:
        self.impl.join_weight_group(*args)

    def receive_weights(self, version: int) -> float:
        return self.impl.receive_weights(version)

    def complete(self, requests: list[dict], n: int = 1, temperature: float = 1.0, max_new_tokens: int = 64,
                 stop: list[str] | None = None, top_logprobs: int = 0, seeds: list[int] | None = None):
        return self.impl.complete(requests, n, temperature, max_new_tokens, stop, top_logprobs, seeds)

    def sequence_logprobs(self, prompt_ids: list[int], response_ids: list[int]) -> list[float]:
        """What the engine's current weights say about a fixed sequence (used to verify weight sync)."""
        return self.impl.engine.sequence_logprobs(prompt_ids, response_ids)

    def ready(self) -> bool:
        return True
