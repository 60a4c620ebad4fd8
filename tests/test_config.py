"""Config: YAML + --set overrides; unknown keys are errors that name the key and the file."""
from pathlib import Path

import pytest

from cluster.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[1]


def test_every_shipped_config_loads():
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        cfg = load_config(path)
        assert cfg.train.steps > 0, path


def test_defaults_and_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("learner:\n  lr: 1.0e-4\n")
    cfg = load_config(p, ["learner.lr=2e-6", "rollout.group_size=4", "data.types=[torf1, counting2]"])
    assert cfg.learner.lr == pytest.approx(2e-6)
    assert cfg.rollout.group_size == 4
    assert cfg.data.types == ["torf1", "counting2"]
    assert cfg.buffer.max_staleness == 0          # default: strictly on-policy


def test_unknown_key_in_file_names_key_and_file(tmp_path):
    p = tmp_path / "typo.yaml"
    p.write_text("learner:\n  lrr: 1.0e-4\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert "learner.lrr" in str(e.value) and str(p) in str(e.value)


def test_unknown_section_and_unknown_override():
    with pytest.raises(ConfigError, match="unknown key 'trainer'"):
        load_config(None, ["trainer.steps=3"])
    with pytest.raises(ConfigError, match="learner.nope"):
        load_config(None, ["learner.nope=3"])


def test_bad_values_are_rejected(tmp_path):
    with pytest.raises(ConfigError, match="rollout.engine"):
        load_config(None, ["rollout.engine=tgi"])
    with pytest.raises(ConfigError, match="unknown question types"):
        load_config(None, ["data.types=[torf9]"])
    with pytest.raises(ConfigError, match="expected section.key=value"):
        load_config(None, ["learner.lr"])
    p = tmp_path / "list.yaml"
    p.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(p)


def test_cli_reports_config_errors(tmp_path, capsys):
    from cluster.train import main
    p = tmp_path / "bad.yaml"
    p.write_text("model:\n  nmae: x\n")
    assert main(["--config", str(p)]) == 2
    assert "model.nmae" in capsys.readouterr().err
