"""Metrics: JSONL lines and Prometheus gauges served on loopback."""
import urllib.request

from cluster.metrics import MetricsLogger, flatten, prometheus_name, read_jsonl


def test_flatten_and_names():
    assert flatten({"a": 1, "b": {"c": 2.5, "d": "x"}, "e": True}) == {"a": 1.0, "b/c": 2.5}
    assert prometheus_name("reward/total") == "waypoint_reward_total"
    assert prometheus_name("time/weight_sync_s") == "waypoint_time_weight_sync_s"


def test_jsonl_and_prometheus_endpoint(tmp_path):
    m = MetricsLogger(tmp_path, host="127.0.0.1", port=0)
    try:
        m.log(0, {"reward/total": 1.5, "buffer/dropped": 0, "note": "text"})
        m.log(1, {"reward/total": 2.5, "buffer/dropped": 1, "nan_is_skipped": float("nan")})
        body = urllib.request.urlopen(f"http://127.0.0.1:{m.port}/metrics", timeout=10).read().decode()
    finally:
        m.close()
    assert "waypoint_reward_total 2.5" in body
    assert "waypoint_buffer_dropped 1.0" in body
    assert "waypoint_step 1.0" in body
    lines = read_jsonl(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in lines] == [0, 1] and lines[0]["note"] == "text"


def test_the_signal_watch_counts_steps_without_any_advantage_and_warns_once():
    from cluster.metrics import SignalWatch
    watch = SignalWatch(patience=3)
    silent, mixed = {"zero_variance_fraction": 1.0}, {"zero_variance_fraction": 0.75}
    copo_rescued = {"zero_variance_fraction": 1.0, "copo/zero_variance_with_gradient": 0.5}
    said = [watch.update(s, r) for s, r in enumerate([silent, silent, mixed, silent, copo_rescued, silent, silent,
                                                      silent, silent, silent])]
    assert watch.steps == 8                                     # COPO's gradient and a mixed step are signal
    assert [i for i, w in enumerate(said) if w] == [7]          # three silent steps in a row, said once
    assert "no reward signal for 3 steps (to step 7)" in said[7]
