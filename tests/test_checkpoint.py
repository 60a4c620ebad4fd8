"""Checkpoints are atomic (a crash mid-save leaves the previous one loadable), pruned to the newest K, and a
SIGTERM/SIGINT becomes a stop request at the next step boundary. No Ray here."""
import os
import signal

import pytest

from cluster.checkpoint import LATEST, STATE, commit_checkpoint, has_checkpoint, latest_checkpoint
from cluster.preemption import StopRequest


def writer(tag: str, fail: bool = False):
    def write(path):
        (path / "learner").mkdir()
        (path / "learner" / "weights").write_text(tag)
        if fail:
            raise OSError("disk full")       # the crash comes before the state file, which marks completeness
        (path / STATE).write_text("{}")
    return write


def test_a_crash_mid_save_leaves_the_previous_checkpoint_loadable(tmp_path):
    root = tmp_path / "checkpoint"
    assert not has_checkpoint(root)
    commit_checkpoint(root, 10, writer("ten"))
    commit_checkpoint(root, 20, writer("twenty"))
    with pytest.raises(OSError, match="disk full"):
        commit_checkpoint(root, 30, writer("thirty", fail=True))
    last = latest_checkpoint(root)
    assert last.name == "step-00000020" and (last / "learner" / "weights").read_text() == "twenty"
    assert (root / "step-00000030.tmp").is_dir() and (root / LATEST).read_text() == "step-00000020"


def test_only_the_newest_k_complete_checkpoints_stay(tmp_path):
    root = tmp_path / "checkpoint"
    for step in (1, 2):
        commit_checkpoint(root, step, writer(str(step)), keep=2)
    with pytest.raises(OSError):
        commit_checkpoint(root, 3, writer("3", fail=True), keep=2)
    commit_checkpoint(root, 4, writer("4"), keep=2)
    assert sorted(p.name for p in root.iterdir()) == [LATEST, "step-00000002", "step-00000004"]
    commit_checkpoint(root, 4, writer("4 again"), keep=2)      # the same step re-saved (a final save)
    assert (latest_checkpoint(root) / "learner" / "weights").read_text() == "4 again"
    assert latest_checkpoint(latest_checkpoint(root)) == latest_checkpoint(root)   # a step dir is one itself


def test_a_writer_that_leaves_no_state_is_refused(tmp_path):
    with pytest.raises(RuntimeError, match=STATE):
        commit_checkpoint(tmp_path, 1, lambda path: None)
    assert not has_checkpoint(tmp_path)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_becomes_a_stop_request_and_handlers_are_restored(sig):
    before = signal.getsignal(sig)
    with StopRequest() as stop:
        assert not stop.requested
        os.kill(os.getpid(), sig)
        assert stop.requested and stop.name == signal.Signals(sig).name and stop.exit_code == 128 + sig
    assert signal.getsignal(sig) is before
