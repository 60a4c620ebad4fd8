"""Property-based fuzz of the config loader and `--set` parser: every bad input is a ConfigError that names the
key or the file; no YAML, pydantic, recursion or type error escapes from inside."""
import os

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cluster.config import ConfigError, load_config, parse_override

FUZZ = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
SECTIONS = ["cluster", "model", "data", "rollout", "reward", "buffer", "algorithm", "learner", "train", "prm"]
# Keys with no import side effects (algorithm.plugins imports modules by name, so it is not fuzzed).
KEYS = ["learner.lr", "rollout.temperature", "rollout.group_size", "train.steps", "data.types", "model.name",
        "data.curriculum.accuracy", "buffer.capacity", "rollout.vllm.max_model_len", "model.overrides",
        "reward.sample_timeout_s", "prm.neutral", "nope.key", "learner", "data.vas.samples"]
yaml_scalars = st.one_of(st.text(max_size=20), st.integers(min_value=-10**500, max_value=10**500).map(str),
                         st.sampled_from([".nan", ".inf", "-.inf", "1e400", "[", "{a: ", "!!python/object:os.x",
                                          "\x00", "- a\n- b", "&a [*a]", "[" * 3000, "{a: " * 400, "null", "~"]))


def _load_or_config_error(path, overrides):
    try:
        return load_config(path, overrides)
    except ConfigError as e:
        assert str(e).strip(), "a ConfigError must say what is wrong"
        return e


@FUZZ
@given(key=st.sampled_from(KEYS), value=yaml_scalars)
@example(key="learner.lr", value="[")                      # was: yaml ParserError escaped
@example(key="learner.lr", value="[" * 3000)               # was: RecursionError escaped
@example(key="learner.lr", value="\x00")                   # was: yaml ReaderError escaped
@example(key="rollout.temperature", value=".nan")          # was: accepted as a temperature
@example(key="model.overrides", value="{a: .inf}")         # was: accepted as a tiny-model knob
@example(key="model.overrides", value="&a [*a]")           # was: a self-containing alias looped forever
def test_any_override_loads_or_names_its_key(key, value):
    out = _load_or_config_error(None, [f"{key}={value}"])
    if isinstance(out, ConfigError):
        assert key.split(".")[0] in str(out)


@FUZZ
@given(text=st.text(max_size=40))
@example(text="no equals sign")
@example(text="=3")
@example(text="...=3")
@example(text=" . = ")
def test_any_set_string_parses_or_is_a_config_error(text):
    try:
        parts, _ = parse_override(text)
    except ConfigError as e:
        assert "--set" in str(e)
        return
    assert parts and all(parts)


def test_non_finite_numbers_name_the_key():
    for value in (".nan", ".inf", "-.inf"):
        with pytest.raises(ConfigError, match="rollout.temperature"):
            load_config(None, [f"rollout.temperature={value}"])
    with pytest.raises(ConfigError, match="model.overrides.a.b"):
        load_config(None, ["model.overrides={a: {b: .nan}}"])


@FUZZ
@given(text=st.one_of(st.text(max_size=200), st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
                      st.recursive(st.one_of(st.none(), st.integers(), st.floats(), st.text(max_size=5)),
                               lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
                               max_leaves=20).map(repr)))
@example(text="- a\n- b\n")
@example(text="a: " + "[" * 3000)                          # was: RecursionError escaped
@example(text="learner:\n  lr: .nan\n")                    # was: accepted
@example(text="learner: {lr: 1}\nlearner: {lr: 2}\n")
def test_any_yaml_text_loads_or_names_the_file(tmp_path, text):
    path = tmp_path / "fuzz.yaml"
    path.write_text(text, encoding="utf-8")
    out = _load_or_config_error(path, [])
    if isinstance(out, ConfigError):
        assert str(path) in str(out)


@FUZZ
@given(data=st.binary(max_size=64))
@example(data=b"\xff\xfe\x00a")                             # was: UnicodeDecodeError escaped
def test_binary_file_names_the_file(tmp_path, data):
    path = tmp_path / "bin.yaml"
    path.write_bytes(data)
    out = _load_or_config_error(path, [])
    if isinstance(out, ConfigError):
        assert str(path) in str(out)


def test_missing_directory_and_broken_symlink_name_the_file(tmp_path):
    link = tmp_path / "broken.yaml"
    os.symlink(tmp_path / "nowhere" / "x.yaml", link)
    for path in (tmp_path / "missing.yaml", tmp_path, link):
        with pytest.raises(ConfigError, match="cannot read config") as e:
            load_config(path)
        assert str(path) in str(e.value)


@FUZZ
@given(steps=st.integers(1, 10**6), lr=st.floats(1e-9, 1.0), accuracy=st.floats(0.0, 1.0),
       temperature=st.floats(0.01, 5.0), group=st.integers(1, 64), section=st.sampled_from(SECTIONS))
def test_valid_overrides_of_numeric_fields_load(steps, lr, accuracy, temperature, group, section):
    cfg = load_config(None, [f"train.steps={steps}", f"learner.lr={lr!r}", f"data.curriculum.accuracy={accuracy!r}",
                             f"rollout.temperature={temperature!r}", f"rollout.group_size={group}"])
    assert (cfg.train.steps, cfg.rollout.group_size) == (steps, group)
    assert cfg.learner.lr == pytest.approx(lr) and cfg.rollout.temperature == pytest.approx(temperature)
    assert cfg.data.curriculum.accuracy == pytest.approx(accuracy)
    assert getattr(cfg, section) is not None


def test_relative_plugin_name_is_a_config_error():
    with pytest.raises(ConfigError, match="algorithm"):
        load_config(None, ["algorithm.plugins=['.']"])
