"""Model specs resolved to local checkpoints (learner.model_zoo)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from learner.model_zoo import _publish, cache_entry_name, is_vision_model, resolve_model

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"corpus_networks": 10, "vocab_size": 600}   # quick tokenizer training


def test_existing_path_returned_as_is(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    assert resolve_model(str(tmp_path)) == str(tmp_path)


def test_bad_specs(tmp_path):
    with pytest.raises(FileNotFoundError):
        resolve_model(str(tmp_path))                     # a directory without config.json
    with pytest.raises(ValueError, match="unknown model"):
        resolve_model("no-such-model", cache_dir=str(tmp_path))
    with pytest.raises(ValueError, match="not supported"):
        resolve_model("tiny-qwen2", cache_dir=str(tmp_path), overrides={"vision_depth": 2})


def test_cache_entry_names():
    a = cache_entry_name("tiny-qwen2", 0, {"hidden_size": 128})
    assert a.startswith("tiny-qwen2-seed0-")
    assert a == cache_entry_name("tiny-qwen2", 0, {"hidden_size": 128})
    assert a != cache_entry_name("tiny-qwen2", 1, {"hidden_size": 128})
    assert a != cache_entry_name("tiny-qwen2", 0, {"hidden_size": 256})


def test_builds_once_then_reuses(tmp_path):
    path = resolve_model("tiny-qwen2", cache_dir=str(tmp_path), overrides=SMALL)
    assert Path(path).parent == tmp_path and (Path(path) / "model.safetensors").is_file()
    assert not is_vision_model(path)
    stamp = os.stat(Path(path) / "model.safetensors").st_mtime_ns
    assert resolve_model("tiny-qwen2", cache_dir=str(tmp_path), overrides=SMALL) == path
    assert os.stat(Path(path) / "model.safetensors").st_mtime_ns == stamp
    other = resolve_model("tiny-qwen2", cache_dir=str(tmp_path), seed=1, overrides=SMALL)
    assert other != path
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([Path(path).name, Path(other).name])


def test_vision_model_and_env_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("WAYPOINT_CACHE", str(tmp_path))
    path = resolve_model("tiny-qwen2-vl", overrides={**SMALL, "vision_depth": 1})
    assert Path(path).parent == tmp_path and is_vision_model(path)


def test_concurrent_builds_agree(tmp_path):
    code = ("import sys; from learner.model_zoo import resolve_model; "
            f"print(resolve_model('tiny-qwen2', cache_dir=sys.argv[1], overrides={SMALL!r}))")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outs]
    paths = {out.strip().splitlines()[-1] for out, _ in outs}
    assert len(paths) == 1
    assert [p.name for p in tmp_path.iterdir()] == [Path(paths.pop()).name]   # no temp dirs left behind


def test_publish_keeps_the_winner(tmp_path):
    final, mine = tmp_path / "model", tmp_path / ".model.tmp"
    for d, tag in ((final, "theirs"), (mine, "mine")):
        d.mkdir()
        (d / "config.json").write_text(tag)
    _publish(mine, final)                                  # lost the race: no error, theirs stays
    assert (final / "config.json").read_text() == "theirs"
