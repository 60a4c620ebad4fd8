"""Rows the way users have them in `datasets`: save_to_disk folders (Dataset and DatasetDict, image columns
included) and hub ids; what cannot be read names its folder or id, bad rows are counted, never dropped."""
import os
import subprocess
import sys

import datasets
import pytest

from data.dataset import DataFileError, load_rows, read_records, write_parquet
from data.math_problems import load_math_rows, synthetic_math_problems, write_math_jsonl
from data.questions import synthetic_dataset


def _records(tmp_path, images=True):
    rows = synthetic_dataset(2, per_type=2, seed=3, render_images=images, image_size=64)
    write_parquet(rows, tmp_path / "rows.parquet")
    return rows, read_records(tmp_path / "rows.parquet")


def test_a_save_to_disk_folder_loads_the_same_rows_as_its_parquet(tmp_path):
    rows, records = _records(tmp_path)
    ds = datasets.Dataset.from_list(records).cast_column("figure", datasets.Image())   # as released: Image column
    ds.save_to_disk(str(tmp_path / "saved"))
    loaded = load_rows(tmp_path / "saved")
    assert loaded.errors == [] and loaded.rows == rows          # figure bytes through the undecoded Image column


def test_a_dataset_dict_folder_takes_the_split_and_names_a_missing_one(tmp_path):
    rows, records = _records(tmp_path, images=False)
    datasets.DatasetDict({"train": datasets.Dataset.from_list(records[:3]),
                          "test": datasets.Dataset.from_list(records[3:])}).save_to_disk(str(tmp_path / "dd"))
    assert load_rows(tmp_path / "dd").rows == rows[:3]
    assert load_rows(tmp_path / "dd", split="test").rows == rows[3:]
    with pytest.raises(DataFileError, match=r"dd: no split 'validation' \(has \['test', 'train'\]\)"):
        load_rows(tmp_path / "dd", split="validation")


def test_bad_records_in_a_saved_dataset_are_counted_with_reasons(tmp_path):
    _, records = _records(tmp_path, images=False)
    records[1] = {**records[1], "type": "no-such-type"}
    records[2] = {**records[2], "question": ""}
    datasets.Dataset.from_list(records).save_to_disk(str(tmp_path / "saved"))
    loaded = load_rows(tmp_path / "saved")
    assert len(loaded.rows) == len(records) - 2 and [i for i, _ in loaded.errors] == [1, 2]
    assert "2 malformed" in loaded.summary()


def test_a_damaged_saved_dataset_names_its_folder(tmp_path):
    _, records = _records(tmp_path, images=False)
    datasets.Dataset.from_list(records).save_to_disk(str(tmp_path / "saved"))
    for shard in (tmp_path / "saved").glob("*.arrow"):
        shard.write_bytes(shard.read_bytes()[:100])
    with pytest.raises(DataFileError, match="saved"):
        load_rows(tmp_path / "saved")


def test_math_problems_from_a_save_to_disk_folder(tmp_path):
    rows = synthetic_math_problems(5, seed=2)
    write_math_jsonl(rows, tmp_path / "m.jsonl")
    records = read_records(tmp_path / "m.jsonl")
    datasets.Dataset.from_list(records).save_to_disk(str(tmp_path / "math"))
    assert load_math_rows(tmp_path / "math").rows == load_math_rows(tmp_path / "m.jsonl").rows


def test_an_unreachable_hub_id_is_a_named_error(tmp_path):
    """Offline (HF_HUB_OFFLINE=1 makes it fail at once rather than after retries): the id is named."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    code = ("from data.dataset import load_rows\n"
            "try:\n    load_rows('waypoint-test/no-such-dataset')\n"
            "except Exception as e:\n    print(type(e).__name__, e)\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.stdout.startswith("DataFileError hub dataset 'waypoint-test/no-such-dataset' (split 'train'")
    with pytest.raises(FileNotFoundError, match="missing/rows.parquet"):
        load_rows("missing/rows.parquet")                       # a missing file is never taken for a hub id


def test_the_training_cli_prints_a_data_error_and_exits_2(monkeypatch, capsys):
    import cluster.controller
    from cluster.train import main

    def unreadable(cfg):
        raise DataFileError("hub dataset 'a/b' (split 'train') could not be loaded: ConnectionError")
    monkeypatch.setattr(cluster.controller, "train", unreadable)
    assert main(["--config", "configs/cpu_tiny.yaml", "--set", "data.source=parquet", "--set", "data.path=a/b"]) == 2
    assert "[waypoint] data error: hub dataset 'a/b'" in capsys.readouterr().err
