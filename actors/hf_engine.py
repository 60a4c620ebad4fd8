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
                 block_token_ids: list[int] | None = None, max_batch_seqs: int = 32):
        """`max_batch_seqs`: most sequences (prompts x n) in one `generate` call; bigger requests are split."""
        from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoTokenizer
        if max_batch_seqs < 1:
            raise ValueError(f"max_batch_seqs must be >= 1, got {max_batch_seqs}")
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
        self.max_batch_seqs = max_batch_seqs

    def batches(self, count: int, n: int, seeded_sampling: bool) -> list[range]:
        """Prompt index ranges, one per `generate` call. Per-prompt seeds with sampling need a call per prompt
        (one torch generator per call), so a group's samples do not depend on what else was asked."""
        per = 1 if seeded_sampling else max(1, self.max_batch_seqs // max(n, 1))
        return [range(a, min(a + per, count)) for a in range(0, count, per)]

    def left_padded(self, seqs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """(input_ids, attention_mask), padded on the left so every prompt ends where generation starts."""
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):
            if s:
                ids[i, width - len(s):] = torch.tensor(list(s), dtype=torch.long)
                mask[i, width - len(s):] = 1
        return ids, mask

    @torch.no_grad()
    def generate(self, prompts: list[EncodedPrompt], n: int, temperature: float, top_p: float,
                 max_new_tokens: int, seeds: list[int] | None = None) -> list[list[GeneratedSample]]:
        out = []
        for idx in self.batches(len(prompts), n, seeds is not None and temperature > 0):
            if seeds is not None:
                torch.manual_seed(seeds[idx[0]])
            out.extend(self._generate_batch([prompts[i] for i in idx], n, temperature, top_p, max_new_tokens))
        return out

    def _generate_batch(self, prompts: list[EncodedPrompt], n, temperature, top_p, max_new_tokens):
        ids, mask = self.left_padded([p.input_ids for p in prompts])
        kwargs = {}
        keys = [sorted((p.mm_inputs or {}).keys()) for p in prompts]
        if any(k != keys[0] for k in keys):
            raise ValueError(f"prompts with different multimodal inputs in one batch: {keys}")
        width = ids.shape[1]
        for k in keys[0]:
            parts = [torch.as_tensor(p.mm_inputs[k]) for p in prompts]
            if all(t.shape == (1, len(p.input_ids)) for t, p in zip(parts, prompts)):
                # per-token inputs (mm_token_type_ids): left-padded like the ids, 0 = text
                kwargs[k] = torch.stack([torch.nn.functional.pad(t[0], (width - t.shape[1], 0)) for t in parts])
            else:   # per-image inputs: patches (or pixel tensors) of the batch's images, in order, along dim 0
                kwargs[k] = torch.cat(parts, dim=0)
        sampling = sampling_kwargs(temperature, top_p)
        out = self.model.generate(
            input_ids=ids, attention_mask=mask, **sampling, max_new_tokens=max_new_tokens,
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
        # rows are prompt-major: prompt b's n samples are rows b*n .. b*n + n-1
        return [samples[b * n:(b + 1) * n] for b in range(len(prompts))]

    @torch.no_grad()
    def complete(self, prompt_ids: list[list[int]], n: int, temperature: float, top_p: float, max_new_tokens: int,
                 stop: list[str] | None = None, top_logprobs: int = 0,
                 seeds: list[int] | None = None) -> list[list[Completion]]:
        """n continuations per prompt, ended at EOS, a stop string (cut off) or max_new_tokens; with
        top_logprobs = k, the k most likely tokens of the processed distribution at every position."""
        out = []
        for idx in self.batches(len(prompt_ids), n, seeds is not None and temperature > 0):
            if seeds is not None:
                torch.manual_seed(seeds[idx[0]])
            x, mask = self.left_padded([list(prompt_ids[i]) for i in idx])
            sampling = sampling_kwargs(temperature, top_p)
            gen = self.model.generate(
                input_ids=x, attention_mask=mask, **sampling, max_new_tokens=max_new_tokens,
                num_return_sequences=n, output_scores=top_logprobs > 0, return_dict_in_generate=True,
                pad_token_id=self.pad_id, stop_strings=stop or None, tokenizer=self.tokenizer)
            rows = gen.sequences[:, x.shape[1]:].tolist()
            done = [self._completion(r, gen.scores, j, stop, top_logprobs) for j, r in enumerate(rows)]
            out.extend(done[b * n:(b + 1) * n] for b in range(len(idx)))
        return out

    def _completion(self, row: list[int], scores, j: int, stop, k: int) -> Completion:
        """Row j of a `generate` call (prompt-major: prompt b's continuations are rows b*n .. b*n + n-1)."""
        tokens, eos = [], False
        for t in row:
            if t in self.eos_ids:
                eos = True
                break
            if t == self.pad_id:   # generate pads a row that ended (stop string) while others ran on
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
