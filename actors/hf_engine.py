"""Rollout engine on transformers `generate`: the CPU engine for vision-language models.

Behaviour log-probabilities are those of the *processed* distribution the tokens were drawn from
(temperature and top-p applied), so they match what the learner computes with the same temperature.
"""
from __future__ import annotations

import torch

from actors.generation import Completion, GeneratedSample, cut_at_stop
from learner.forward import gather_logprobs
from learner.prompting import EncodedPrompt


def sampling_kwargs(temperature: float, top_p: float) -> dict:
    """`generate` sampling arguments; temperature 0 is greedy decoding (evaluation), as in vLLM."""
    if temperature > 0:
        return dict(do_sample=True, temperature=temperature, top_p=top_p, top_k=0)
    return dict(do_sample=False, top_k=None, top_p=None, temperature=None)


class HFEngine:
    def __init__(self, model_path: str, vision: bool, dtype: str = "float32", seed: int = 0,
                 block_token_ids: list[int] | None = None):
        from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoTokenizer
        torch.manual_seed(seed)
        cls = AutoModelForImageTextToText if vision else AutoModelForCausalLM
        self.model = cls.from_pretrained(model_path, dtype=getattr(torch, dtype)).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        gen = self.model.generation_config
        eos = gen.eos_token_id if gen.eos_token_id is not None else self.tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos])
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else min(self.eos_ids)
        self.block = [[t] for t in (block_token_ids or [])]
        self.vision = vision

    @torch.no_grad()
    def generate(self, prompts: list[EncodedPrompt], n: int, temperature: float, top_p: float,
                 max_new_tokens: int, seeds: list[int] | None = None) -> list[list[GeneratedSample]]:
        # One prompt per call keeps image batching trivial; CPU throughput comes from the n samples.
        out = []
        for i, p in enumerate(prompts):
            if seeds is not None:
                torch.manual_seed(seeds[i])
            out.append(self._generate_one(p, n, temperature, top_p, max_new_tokens))
        return out

    def _generate_one(self, prompt: EncodedPrompt, n, temperature, top_p, max_new_tokens):
        ids = torch.tensor([prompt.input_ids])
        kwargs = {}
        for k, v in (prompt.mm_inputs or {}).items():
            kwargs[k] = torch.as_tensor(v)
        sampling = sampling_kwargs(temperature, top_p)
        out = self.model.generate(
            input_ids=ids, attention_mask=torch.ones_like(ids), **sampling, max_new_tokens=max_new_tokens,
            num_return_sequences=n, output_scores=True, return_dict_in_generate=True,
            pad_token_id=self.pad_id, bad_words_ids=self.block or None, **kwargs)
        # scores are the processed logits the sampler used; normalise them to log-probs
        logprobs = self.model.compute_transition_scores(out.sequences, out.scores, normalize_logits=True)
        gen = out.sequences[:, ids.shape[1]:]
        samples = []
        for row, lp in zip(gen.tolist(), logprobs.tolist()):
            tokens, lps, reason = [], [], "length"
            for t, logprob in zip(row, lp):
                tokens.append(t)
                lps.append(logprob)
                if t in self.eos_ids:
                    reason = "stop"
                    break
            text = self.tokenizer.decode(tokens, skip_special_tokens=True)
            samples.append(GeneratedSample(tokens, lps, text, reason))
        return samples

    @torch.no_grad()
    def complete(self, prompt_ids: list[list[int]], n: int, temperature: float, top_p: float, max_new_tokens: int,
                 stop: list[str] | None = None, top_logprobs: int = 0,
                 seeds: list[int] | None = None) -> list[list[Completion]]:
        """n continuations per prompt, ended at EOS, a stop string (cut off) or max_new_tokens; with
        top_logprobs = k, the k most likely tokens of the processed distribution at every position."""
        out = []
        for i, ids in enumerate(prompt_ids):
            if seeds is not None:
                torch.manual_seed(seeds[i])
            x = torch.tensor([list(ids)])
            sampling = sampling_kwargs(temperature, top_p)
            gen = self.model.generate(
                input_ids=x, attention_mask=torch.ones_like(x), **sampling, max_new_tokens=max_new_tokens,
                num_return_sequences=n, output_scores=top_logprobs > 0, return_dict_in_generate=True,
                pad_token_id=self.pad_id, stop_strings=stop or None, tokenizer=self.tokenizer)
            rows = gen.sequences[:, x.shape[1]:].tolist()
            out.append([self._completion(r, gen.scores, j, stop, top_logprobs) for j, r in enumerate(rows)])
        return out

    def _completion(self, row: list[int], scores, j: int, stop, k: int) -> Completion:
        tokens, eos = [], False
        for t in row:
            if t in self.eos_ids:
                eos = True
                break
            tokens.append(t)
        text, stopped = cut_at_stop(self.tokenizer.decode(tokens, skip_special_tokens=True), stop)
        pieces, tops = [], []
        if k > 0:
            for pos, t in enumerate(tokens):
                lp = torch.log_softmax(scores[pos][j].float(), dim=-1)
                vals, idx = lp.topk(k)
                pieces.append(self.tokenizer.decode([t]))
                top: dict[str, float] = {}
                for v, i in zip(vals.tolist(), idx.tolist()):
                    top.setdefault(self.tokenizer.decode([i]), v)   # sorted: the first is the likelier
                tops.append(top)
        return Completion(text, eos and not stopped, pieces, tops)

    @torch.no_grad()
    def sequence_logprobs(self, prompt_ids: list[int], response_ids: list[int]) -> list[float]:
        """log p(response token | prefix) under the current weights (temperature 1, text-only prompt)."""
        ids = torch.tensor([list(prompt_ids) + list(response_ids)])
        logits = self.model(input_ids=ids).logits[0, len(prompt_ids) - 1:-1].float()
        return gather_logprobs(logits, torch.tensor(response_ids)).tolist()

    def load_weights(self, named_tensors) -> None:
        state = {k: torch.as_tensor(v) for k, v in named_tensors}
        missing, unexpected = self.model.load_state_dict(state, strict=False)
        # tied embeddings can legitimately be absent; anything else means a different architecture
        missing = [m for m in missing if not m.endswith("lm_head.weight")]
        if missing or unexpected:
            raise ValueError(f"weights do not match the rollout model: missing={missing[:5]} "
                             f"unexpected={unexpected[:5]}")
