"""Learner forward + backward throughput: padded vs packed vs shared-prefix (learner.forward).

    python -m benchmarks.learner [--quick] [--json PATH] [--threads 1] [--repeats 5] [--large-repeats 3]

One step = one forward and backward of a token-mean loss over `groups` prompt groups of G responses each
(random token ids, every prompt P tokens, every response R tokens). Useful tokens per step are counted the same
for every mode: the sum of prompt + response lengths of every sequence as the padded path sees them,
groups x G x (P + R), so tokens/s ratios are ratios of step times. Each cell is the median of `repeats` timed
steps after one warm-up step per mode, the modes taking turns (process CPU time by default, see --clock).
Every mode is what the learner engine runs with `learner.forward` set to it (`auto` picks shared_prefix under
sdpa/eager attention).
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import numpy as np
import torch

from learner.forward import FORWARD_MODES, Segment, response_logprobs, response_mask
from learner.model_zoo import SMOLLM2, TINY_QWEN2, resolve_model

ACCEPTANCE = (512, 8)     # prompt length, G: the project's bar is shared_prefix >= 3x padded here
RESPONSE_LEN = 64


def load(name: str):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    path = resolve_model(name)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="sdpa")
    tok = AutoTokenizer.from_pretrained(path)
    return model.train(), tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id


def make_segments(vocab: int, groups: int, g: int, prompt_len: int, response_len: int, seed: int) -> list[Segment]:
    rng = np.random.default_rng(seed)
    ids = lambda n: [int(t) for t in rng.integers(10, vocab, size=n)]   # noqa: E731
    return [Segment(ids(prompt_len), [ids(response_len) for _ in range(g)]) for _ in range(groups)]


def step_fn(model, segments: list[Segment], mode: str, pad_id: int):
    """One forward + backward of the token-mean negative log-likelihood of the responses."""
    mask = response_mask(segments)
    def step():
        logp = response_logprobs(model, segments, mode, 1.0, False, pad_id)
        loss = -(logp * mask).sum() / mask.sum()
        loss.backward()
        model.zero_grad(set_to_none=True)
    return step


def time_cells(steps: dict, repeats: int) -> dict[str, tuple[list[float], list[float]]]:
    """{mode: (wall seconds, process CPU seconds)} of each timed step. One warm-up step per mode, then the
    modes take turns, so a burst of load from other jobs hits every mode alike."""
    for step in steps.values():
        step()
    out: dict[str, tuple[list[float], list[float]]] = {m: ([], []) for m in steps}
    for _ in range(repeats):
        for mode, step in steps.items():
            w0, c0 = time.perf_counter(), time.process_time()
            step()
            out[mode][0].append(time.perf_counter() - w0)
            out[mode][1].append(time.process_time() - c0)
    return out


def run(cells: list[tuple[str, int, int, int]], groups: int, response_len: int, clock: str) -> list[dict]:
    results = []
    loaded: dict[str, tuple] = {}
    for name, p, g, repeats in cells:
        if name not in loaded:
            loaded.clear()
            loaded[name] = load(name)
        model, pad_id = loaded[name]
        segments = make_segments(model.config.vocab_size, groups, g, p, response_len, seed=p * 100 + g)
        useful = groups * g * (p + response_len)
        modes = list(FORWARD_MODES)
        row = {"model": name, "prompt_len": p, "G": g, "groups": groups, "response_len": response_len,
               "useful_tokens": useful, "modes": {}}
        timings = time_cells({m: step_fn(model, segments, m, pad_id) for m in modes}, repeats)
        for mode, (wall, cpu) in timings.items():
            med = statistics.median(cpu if clock == "cpu" else wall)
            row["modes"][mode] = {"median_s": med, "wall_s": wall, "cpu_s": cpu, "tokens_per_s": useful / med}
        pad = row["modes"]["padded"]["tokens_per_s"]
        for m in row["modes"].values():
            m["ratio_to_padded"] = m["tokens_per_s"] / pad
        results.append(row)
        print(format_row(row), flush=True)
    return results


HEADER = ("| model | P | G | useful tok/step | padded tok/s | packed tok/s (x) | shared_prefix tok/s (x) |\n"
          "|---|---|---|---|---|---|---|")


def format_row(row: dict) -> str:
    m = row["modes"]
    cell = lambda k: (f"{m[k]['tokens_per_s']:.0f} ({m[k]['ratio_to_padded']:.2f}x)" if k in m else "-")  # noqa
    return (f"| {row['model']} | {row['prompt_len']} | {row['G']} | {row['useful_tokens']} "
            f"| {m['padded']['tokens_per_s']:.0f} | {cell('packed')} | {cell('shared_prefix')} |")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="prompt 128/512, G 4/8, no SmolLM2, 1 repeat")
    ap.add_argument("--json", help="write the results here")
    # 1: on the shared 2-core CPU machine two OpenMP threads stall on each other (5-10x slower under load)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--large-repeats", type=int, default=3, help="repeats for SmolLM2 (a padded step is ~1 min)")
    # cpu: process CPU seconds, robust when other jobs share the cores (with 1 thread it equals the wall time
    # of an idle machine); wall: elapsed seconds. Both are recorded in the JSON either way.
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    ap.add_argument("--groups", type=int, default=1, help="prompt groups per step")
    ap.add_argument("--no-smollm2", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    prompts, gs = ((128, 512), (4, 8)) if args.quick else ((128, 512, 2048), (4, 8, 16))
    repeats = 1 if args.quick else args.repeats
    cells = [(TINY_QWEN2, p, g, repeats) for p in prompts for g in gs]
    if not (args.quick or args.no_smollm2):
        cells.append((SMOLLM2, *ACCEPTANCE, args.large_repeats))
    print(f"torch {torch.__version__}, {args.threads} threads, fp32, sdpa, {args.clock} clock; "
          f"{args.groups} group(s)/step, "
          f"response {RESPONSE_LEN} tokens, median of {repeats} ({args.large_repeats} for SmolLM2) "
          f"timed steps after 1 warm-up\n"
          f"useful tokens = groups x G x (prompt + response), the same for every mode; (x) = ratio to padded\n")
    print(HEADER, flush=True)
    results = run(cells, args.groups, RESPONSE_LEN, args.clock)
    for r in results:
        if (r["prompt_len"], r["G"]) == ACCEPTANCE:
            ratio = r["modes"]["shared_prefix"]["ratio_to_padded"]
            print(f"\nacceptance {r['model']} P=512 G=8: shared_prefix {ratio:.2f}x padded "
                  f"({'holds' if ratio >= 3 else 'FAILS'}, bar 3x)")
    if args.json:
        meta = {"torch": torch.__version__, "threads": args.threads, "repeats": repeats,
                "large_repeats": args.large_repeats, "groups": args.groups, "clock": args.clock,
                "machine": platform.processor() or platform.machine(), "dtype": "float32", "attn": "sdpa"}
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
