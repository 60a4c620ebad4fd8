"""PRMActor: GroundedPRM process rewards as a scoring stage (rollout -> reward -> prm [-> reference] -> buffer).

Every sample is split into steps (`rewards.prm.steps`) and each step gets a score in [0, 1]:
- tool-only mode (no `prm.model`): the sandboxed SymPy verifier's verdict, verified 1 / refuted 0 /
  not checkable `prm.neutral`;
- generative mode: a PRM checkpoint served by a rollout engine (vLLM or HF) writes the verify/judge/output
  turn of `rewards.prm.rationale` for step k after its own turns for steps 1..k-1, and
  s_k = p(Right) / (p(Right) + p(Wrong)) from the top-k log-probs at its label token (`rewards.prm.score`).
The sample's process reward is the aggregation of its step scores (min | mean | last | product); the
group's `total` reward gains `prm.weight` x process. Step scores and the response token ending each step go
with the group, for token-placed process advantages in the learner.
"""
from __future__ import annotations

import time
from collections import Counter

import numpy as np
import ray

from data.trajectory import TrajectoryGroup
from rewards.prm.score import aggregate_step_scores, generated_step_score, step_end_tokens, tool_step_score
from rewards.prm.steps import split_steps


class ProcessScorer:
    """The actor's logic without Ray (tests run it inline)."""

    def __init__(self, prm: dict, policy_path: str, engine: str = "hf", rollout_cfg: dict | None = None,
                 seed: int = 0, torch_threads: int = 1):
        from transformers import AutoTokenizer

        from rewards.prm.verify import ToolVerifier
        self.prm = prm
        self.policy_tokenizer = AutoTokenizer.from_pretrained(policy_path)
        self.verifier = ToolVerifier(prm["tool_timeout_s"], prm["tool_memory_mb"])
        self.judge = None
        if prm.get("model"):
            from actors.rollout import Rollout
            self.judge = Rollout(prm["model"], engine, False, rollout_cfg or {"top_p": 1.0}, False, seed=seed,
                                 torch_threads=torch_threads)
        self.counts: Counter = Counter()
        self.scores: list[float] = []          # every step score since the last stats() call
        self.prm_seconds = 0.0

    def close(self) -> None:
        self.verifier.close()

    # ---- step scores ----------------------------------------------------------------------------------
    def _tool_scores(self, steps: list[str]) -> list[float]:
        out = []
        for text in steps:
            verdict = self.verifier.verify_step(text)
            self.counts[f"steps_{verdict.verdict}"] += 1
            self.counts["steps_scored"] += 1
            out.append(tool_step_score(verdict.verdict, self.prm["neutral"]))
        return out

    def score_next(self, question: str, items: list[tuple[list[str], list[str], str]]) -> list[tuple[float, str]]:
        """Score one new step per item (steps so far, this PRM's outputs for them, the new step): (score, the
        PRM's output for it). Generative mode sends every item's turn in one engine call."""
        if self.judge is None:
            return [(s, "") for s in self._tool_scores([step for _, _, step in items])]
        from rewards.prm.rationale import scoring_messages
        p = self.prm
        requests = [{"messages": scoring_messages(question, steps, outputs, step, p["right_label"], p["wrong_label"])}
                    for steps, outputs, step in items]
        done = self.judge.complete(requests, n=1, temperature=p["temperature"], max_new_tokens=p["max_new_tokens"],
                                   top_logprobs=p["top_logprobs"])
        out = []
        for (c,) in done:
            s, how = generated_step_score(c.tokens, c.top_logprobs, p["right_label"], p["wrong_label"])
            self.counts[f"label_{how}"] += 1
            self.counts["steps_scored"] += 1
            out.append((s, c.text))
        return out

    def _generative_scores(self, question: str, samples_steps: list[list[str]]) -> list[list[float]]:
        """Turn k of every sample that has a step k goes into one call: the G samples in parallel."""
        outputs: list[list[str]] = [[] for _ in samples_steps]
        scores: list[list[float]] = [[] for _ in samples_steps]
        for k in range(max((len(s) for s in samples_steps), default=0)):
            live = [i for i, s in enumerate(samples_steps) if len(s) > k]
            done = self.score_next(question, [(samples_steps[i][:k], outputs[i], samples_steps[i][k]) for i in live])
            for i, (s, text) in zip(live, done):
                outputs[i].append(text)
                scores[i].append(s)
        return scores

    # ---- one group ------------------------------------------------------------------------------------
    def score(self, group: TrajectoryGroup) -> TrajectoryGroup:
        from learner.token_offsets import token_char_ends
        t0 = time.perf_counter()
        step_lists, step_tokens = [], []
        for s in group.samples:
            text, ends = token_char_ends(self.policy_tokenizer, s.token_ids)
            steps = split_steps(text, self.prm["step_mode"])
            step_lists.append([st.text for st in steps])
            step_tokens.append(step_end_tokens([st.end for st in steps], ends))
        if self.judge is None:
            scores = [self._tool_scores(steps) for steps in step_lists]
        else:
            scores = self._generative_scores(str(group.row.get("question", "")), step_lists)
        process = np.asarray([aggregate_step_scores(sc, self.prm["aggregation"]) for sc in scores])
        group.rewards["process"] = process
        group.rewards["total"] = group.rewards["total"] + self.prm["weight"] * process
        group.step_scores, group.step_tokens = scores, step_tokens
        self.counts["samples"] += group.size
        self.counts["steps"] += sum(len(sc) for sc in scores)
        self.counts["samples_without_steps"] += sum(not sc for sc in scores)
        self.scores.extend(x for sc in scores for x in sc)
        elapsed = time.perf_counter() - t0
        self.prm_seconds += elapsed
        group.timing["prm_s"] = elapsed
        return group

    def stats(self) -> dict:
        """Cumulative counts, the verifier's tool time and timeouts, and the score distribution since last call."""
        c, tool = self.counts, self.verifier.stats()
        steps = max(c["steps_scored"], 1)     # in groups and in search (score_next)
        out = {"samples_scored": float(c["samples"]), "steps_per_sample": c["steps"] / max(c["samples"], 1),
               "samples_without_steps": float(c["samples_without_steps"]), "prm_seconds": self.prm_seconds}
        if self.judge is None:
            out.update({f"{k}_rate": c[f"steps_{k}"] / steps for k in ("verified", "refuted", "not_checkable")})
            out.update({"tool_seconds": tool["tool_seconds"], "tool_timeouts": float(tool["timeouts"]),
                        "tool_crashes": float(tool["crashes"])})
        else:
            # "neither": a label token was generated but no label is among its top k (score 0.5 as well)
            out.update({f"label_{k}_rate": c[f"label_{k}"] / steps
                        for k in ("both", "right_only", "wrong_only", "neither", "no_label")})
        if self.scores:
            q = np.quantile(self.scores, [0.1, 0.5, 0.9])
            out.update({"score_mean": float(np.mean(self.scores)), "score_p10": float(q[0]),
                        "score_p50": float(q[1]), "score_p90": float(q[2])})
            self.scores = []
        return out


@ray.remote
class PRMActor:
    def __init__(self, *args, **kwargs):
        self.impl = ProcessScorer(*args, **kwargs)

    def score(self, group: TrajectoryGroup, status: dict) -> tuple[TrajectoryGroup, dict]:
        """Call with `num_returns=2` on the reward actor's (group, status)."""
        group = self.impl.score(group)
        return group, {**status, "prm_s": group.timing["prm_s"]}

    def score_next(self, question: str, items: list) -> list[tuple[float, str]]:
        return self.impl.score_next(question, items)

    def stats(self) -> dict:
        return self.impl.stats()

    def ready(self) -> bool:
        return True
