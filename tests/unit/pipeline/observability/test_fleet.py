"""The fleet view on the reports of a real worker run, bounded for big fleets, and the
dashboard's routes on the status server."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest

from models.spec import ModelMeta, ModelSpec
from models.zoo import build_model
from pipeline.observability.fleet import FleetConfig, FleetView
from pipeline.observability.metrics import WorkerMetrics
from pipeline.observability.report import BatchReport, Detections, Predictions, SwapReport
from pipeline.observability.server import HttpConfig, StatusServer
from pipeline.serving import ServingModel
from pipeline.worker import Worker, WorkerConfig
from streams.datasets import SyntheticConfig, simulate
from streams.memory import MemoryBus, MemorySink, MemorySource
from streams.replay import FaultConfig, ReplayConfig, replay

CONFIG = FleetConfig(timeline_points=16, timeline_devices=5, recent=8, list_devices=10)


class Reports(list):
    def observe(self, report: BatchReport) -> None:
        self.append(report)


@pytest.fixture(scope="module")
def run():
    """12 devices through a worker (small batches, a few corrupt records) into a fleet view."""
    data = simulate(SyntheticConfig(devices=12, duration_s=20, seed=7))
    spec = ModelSpec(setup="stream", cell="gru", hidden=8, next_step=True)
    mean = tuple(float(v) for v in np.concatenate([s.values for s in data.streams]).mean(0))
    meta = ModelMeta(spec, data.channels, data.activities, 50.0, mean, (0.5,) * 6, 128, 1)
    bus, out = MemoryBus(3, 1_000_000), MemoryBus(1, 10_000_000)
    faults = FaultConfig(corrupt=0.01, seed=3)
    replay(data, MemorySink(bus), ReplayConfig(samples_per_record=10, faults=faults))
    fleet, reports = FleetView(CONFIG), Reports()
    worker = Worker(
        MemorySource(bus, ["sensor.raw"]), MemorySink(out),
        ServingModel.load(build_model(spec, meta), meta, "m@v1"),
        config=WorkerConfig(emit="every_k", every_k=10, min_dwell=10, max_records=40),
        observers=[fleet, reports],
    )  # fmt: skip
    worker.run(timeout=0.2)
    topics: dict[str, list[dict]] = {}
    for m in MemorySource(out, ["har.predictions", "har.events"]).poll(10_000_000, 0):
        topics.setdefault(m.topic, []).append(json.loads(m.value))
    return SimpleNamespace(
        data=data, worker=worker, fleet=fleet, reports=reports,
        predictions=topics["har.predictions"], events=topics["har.events"],
    )  # fmt: skip


def test_the_overview_agrees_with_the_worker_and_its_output(run):
    snap, stats = run.fleet.snapshot(), run.worker.stats
    assert (snap["samples"], snap["records"], snap["messages"]) == (
        stats.samples, stats.records, stats.messages)  # fmt: skip
    assert snap["batches"] == len(run.reports) > 10
    assert snap["dead_letters"] == dict(stats.rejected) and stats.rejected
    current = {p["device"]: p["activity"] for p in run.predictions}  # the last one wins
    assert snap["devices"] == snap["worker_devices"] == len(current) == 12
    assert snap["by_activity"] == {a: Counter(current.values())[a] for a in run.data.activities}
    assert snap["classes"] == list(run.data.activities)
    listed = snap["device_list"]
    assert len(listed) == CONFIG.list_devices
    assert all(current[d["device"]] == d["activity"] for d in listed)
    assert [(c["device"], c["to"], c["seq"]) for c in snap["changes"]] == [
        (e["device"], e["to"], e["seq"]) for e in run.events[::-1][: CONFIG.recent]]  # fmt: skip
    assert snap["model"] == {"version": "m@v1", "versions": ["m@v1"], "swaps": []}
    assert snap["throughput"]["samples_per_s"] > 0
    latency = np.array(stats.latency_ms)
    assert snap["latency_ms"]["p50"] == pytest.approx(np.percentile(latency, 50), abs=0.01)
    assert snap["latency_ms"]["p99"] == pytest.approx(np.percentile(latency, 99), abs=0.01)


def test_accuracy_and_anomalies_match_the_emitted_messages(run):
    labels = {s.device: dict(zip(s.sequence().tolist(), s.labels.tolist(), strict=True))
              for s in run.data.streams}  # fmt: skip
    scored = [(p["activity"], run.data.activities[labels[p["device"]][p["seq"]]])
              for p in run.predictions if labels[p["device"]][p["seq"]] >= 0]  # fmt: skip
    accuracy = run.fleet.snapshot()["accuracy"]
    assert accuracy["scored"] == len(scored) == accuracy["by_version"]["m@v1"]["scored"]
    assert accuracy["overall"] == pytest.approx(np.mean([a == b for a, b in scored]), abs=1e-4)
    top = sorted((p["anomaly"] for p in run.predictions), reverse=True)[: CONFIG.recent]
    got = run.fleet.snapshot()["anomalies"]
    assert [a["score"] for a in got] == pytest.approx(top, abs=1e-4)


def test_timelines_are_bounded_and_hold_each_device_s_latest_predictions(run):
    fleet = run.fleet
    by_device: dict[str, list[dict]] = {}
    for p in run.predictions:
        by_device.setdefault(p["device"], []).append(p)
    kept = 0
    for device, messages in by_device.items():
        d = fleet.device(device)
        assert d is not None and d["activity"] == messages[-1]["activity"]
        points = d["points"]
        assert len(points["seq"]) in (0, CONFIG.timeline_points)  # kept from the start or not
        kept += bool(points["seq"])
        if points["seq"]:
            tail = messages[-len(points["seq"]) :]
            assert points["seq"] == [m["seq"] for m in tail]
            assert points["activity"] == [m["activity"] for m in tail]
            assert points["anomaly"] == pytest.approx([m["anomaly"] for m in tail], abs=1e-4)
            assert set(points["version"]) == {"m@v1"}
            assert all(0 < c <= 1 for c in points["confidence"])
            assert set(points["label"]) <= {*run.data.activities, None}
    assert kept == CONFIG.timeline_devices
    assert fleet.device("no-such-device") is None
    json.dumps(fleet.snapshot(), allow_nan=False)
    for device in by_device:
        json.dumps(fleet.device(device), allow_nan=False)


def _batch(devices, batch, wall_time, version="m@v1", label=0, swaps=()):
    n = len(devices)
    rows = Predictions(
        list(devices), np.full(n, batch * 25), np.full(n, batch * 500.0), np.arange(n) % 3,
        np.full(n, 0.8), np.full(n, label), np.full(n, np.nan), ("A", "B", "C"), version,
    )  # fmt: skip
    return BatchReport(batch, samples=25 * n, records=n, messages=n, predictions=rows,
                       swaps=list(swaps), wall_time=wall_time)  # fmt: skip


def test_a_big_fleet_stays_within_its_bounds_and_idle_devices_are_forgotten():
    config = FleetConfig(max_devices=5000, timeline_devices=100, timeline_points=8, idle_s=60)
    fleet = FleetView(config)
    names = [f"d{i}" for i in range(12_000)]
    for batch in range(1, 25):  # 12,000 devices, 3,000 per batch
        part = names[(batch % 4) * 3000 :][:3000]
        fleet.observe(_batch(part, batch, wall_time=batch / 10))
    snap = fleet.snapshot()
    assert snap["devices"] == config.max_devices
    assert sum(snap["by_activity"].values()) == config.max_devices
    assert sum(bool(fleet.device(d) and fleet.device(d)["points"]["seq"]) for d in names) == 100
    assert max(len(fleet.device(d)["points"]["seq"]) for d in names[:3000]) <= 8
    assert snap["latency_ms"] == {"p50": None, "p99": None}
    assert snap["anomalies"] == [] and json.dumps(snap, allow_nan=False)
    fleet.observe(_batch(["late"], 25, wall_time=1000.0))
    assert fleet.snapshot()["devices"] == 1
    assert fleet.device("d0") is None and fleet.device("late")["points"]["seq"] == [625]


def test_a_device_the_dashboard_asks_for_takes_over_the_timeline_viewed_least_recently():
    fleet = FleetView(FleetConfig(timeline_devices=2))
    fleet.observe(_batch(["a", "b", "c"], 1, 1.0))
    assert fleet.device("a")["points"]["seq"] == [25]  # viewed
    assert fleet.device("c")["points"]["seq"] == []  # asked for
    fleet.observe(_batch(["a", "b", "c"], 2, 2.0))
    assert [fleet.device(d)["points"]["seq"] for d in "abc"] == [[25, 50], [], [50]]


def test_a_swap_shows_in_the_model_and_in_the_timelines():
    fleet = FleetView()
    fleet.observe(_batch(["a", "b"], 1, 10.0, label=-1))
    swap = SwapReport("stream", "m@v2", "m@v1", 2, (3.5, 1.0))
    fleet.observe(_batch(["a"], 2, 11.0, version="m@v2", swaps=[swap]))
    snap = fleet.snapshot()
    assert snap["model"] == {
        "version": "m@v2",
        "versions": ["m@v1", "m@v2"],
        "swaps": [
            {"slot": "stream", "version": "m@v2", "previous": "m@v1", "batch": 2, "pause_ms": 3.5}
        ],
    }
    assert snap["accuracy"]["by_version"] == {"m@v2": {"accuracy": 1.0, "scored": 1}}
    assert fleet.device("a")["points"]["version"] == ["m@v1", "m@v2"]
    assert fleet.device("a")["points"]["label"] == [None, "A"]
    assert [d["device"] for d in snap["device_list"]] == ["a", "b"]


def _windows(devices, first, score, threshold=1.0, version="s2s@v1"):
    """Windows of 10 samples from ``first`` on, one per device, scored ``score``."""
    score = np.asarray(score, np.float64)
    first = np.asarray(first)
    return Detections(list(devices), first, first + 9, first * 20.0 + 180.0, score,
                      score > threshold, threshold, version)  # fmt: skip


def _detecting(devices, batch, wall_time, detections):
    report = _batch(devices, batch, wall_time)
    report.detections = detections
    return report


def test_a_device_s_detector_windows_are_kept_in_order_and_bounded():
    fleet = FleetView(FleetConfig(timeline_points=4))
    fleet.observe(_batch(["a", "b"], 1, 1.0))
    fleet.observe(_detecting(["a", "b"], 2, 2.0, _windows(["a", "a"], [0, 10], [0.5, 2.0])))
    d = fleet.device("a")["detector"]
    assert d == {"t_ms": [180.0, 380.0], "seq_first": [0, 10], "seq_last": [9, 19],
                 "score": [0.5, 2.0], "flagged": [False, True], "threshold": 1.0,
                 "model": "s2s@v1"}  # fmt: skip
    # five more for a (more than its ring holds, in one batch), under a new detector
    more = _windows(["a"] * 5 + ["b"], [20, 30, 40, 50, 60, 0], [0.1, 0.2, 3.0, 0.4, 0.5, 0.25],
                    threshold=2.5, version="s2s@v2")  # fmt: skip
    fleet.observe(_detecting(["a", "b"], 3, 3.0, more))
    d = fleet.device("a")["detector"]
    assert d["seq_first"] == [30, 40, 50, 60] and d["seq_last"] == [39, 49, 59, 69]
    assert d["score"] == pytest.approx([0.2, 3.0, 0.4, 0.5])
    assert d["flagged"] == [False, True, False, False]
    assert (d["threshold"], d["model"]) == (2.5, "s2s@v2")
    assert fleet.device("b")["detector"]["score"] == [0.25]
    listed = {e["device"]: e["detector"] for e in fleet.snapshot()["device_list"]}
    assert listed == {"a": {"score": 0.5, "flagged": False, "version": "s2s@v2"},
                      "b": {"score": 0.25, "flagged": False, "version": "s2s@v2"}}  # fmt: skip
    json.dumps(fleet.snapshot(), allow_nan=False)
    json.dumps(fleet.device("a"), allow_nan=False)


def test_the_snapshot_counts_the_flagged_windows_of_the_last_anomaly_s():
    fleet = FleetView(FleetConfig(anomaly_s=10.0, recent=3))
    fleet.observe(_batch(["a"], 1, 1.0))
    assert "detector" not in fleet.snapshot()
    fleet.observe(_detecting(["a"], 2, 2.0, _windows(["a", "x", "y"], [0, 0, 0], [5, 6, 0.5])))
    fleet.observe(_detecting(["a"], 3, 8.0, _windows(["a"], [10], [np.nan])))
    assert fleet.snapshot()["detector"]["flagged_in_window"] == 2
    fleet.observe(_detecting(["a"], 4, 15.0, _windows(["a", "z"], [20, 0], [7.0, 1.5])))
    detector = fleet.snapshot()["detector"]
    assert {k: v for k, v in detector.items() if k != "recent"} == {
        "version": "s2s@v1", "threshold": 1.0, "scored": 6, "flagged": 4, "window_s": 10.0,
        "flagged_in_window": 2,  # the batch at 2.0 s is more than 10 s old
    }  # fmt: skip
    recent = [(f["device"], f["seq_first"], f["seq_last"], f["score"], f["version"])
              for f in detector["recent"]]  # fmt: skip
    assert recent == [("z", 0, 9, 1.5, "s2s@v1"), ("a", 20, 29, 7.0, "s2s@v1"),
                      ("x", 0, 9, 6.0, "s2s@v1")]  # fmt: skip
    assert fleet.device("a")["detector"]["score"] == [5.0, None, 7.0]
    json.dumps(fleet.snapshot(), allow_nan=False)


def test_a_device_without_detector_windows_looks_as_without_a_detector():
    plain, detecting = FleetView(), FleetView()
    for batch in range(1, 4):
        plain.observe(_batch(["a", "b"], batch, float(batch)))
        windows = _windows(["a"], [batch * 10], [2.0 * batch])
        detecting.observe(_detecting(["a", "b"], batch, float(batch), windows))
    assert detecting.device("b") == plain.device("b") and "detector" not in plain.device("b")
    assert "detector" in detecting.device("a")
    shown, before = detecting.snapshot(), plain.snapshot()
    assert "detector" not in before and "detector" in shown
    assert [e["device"] for e in shown["device_list"]] == ["a", "b"]
    assert shown["device_list"][1] == before["device_list"][1]
    latest = shown["device_list"][0].pop("detector")
    assert latest == {"score": 6.0, "flagged": True, "version": "s2s@v1"}
    assert {k: v for k, v in shown.items() if k != "detector"} == before


def test_a_timeline_that_changes_hands_drops_the_detector_windows_of_its_last_device():
    fleet = FleetView(FleetConfig(timeline_devices=1, idle_s=10.0))
    fleet.observe(_detecting(["a"], 1, 1.0, _windows(["a"], [0], [3.0])))
    assert fleet.device("a")["detector"]["score"] == [3.0]
    fleet.observe(_batch(["c"], 2, 100.0))  # a falls silent and is forgotten; c takes its rows
    assert fleet.device("a") is None and "detector" not in fleet.device("c")
    assert "detector" not in fleet.snapshot()["device_list"][0]


def _get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read()


def test_the_status_server_serves_the_dashboard_and_its_json(run):
    server = StatusServer(HttpConfig(port=0), WorkerMetrics(), health=lambda: {"up": True},
                          fleet=run.fleet).start()  # fmt: skip
    try:
        url = server.url
        status, kind, body = _get(url + "api/fleet")
        assert (status, kind) == (200, "application/json")
        assert json.loads(body)["devices"] == 12
        device = run.predictions[0]["device"]  # the first has a timeline
        status, _, body = _get(url + f"api/devices/{device}")
        assert status == 200 and len(json.loads(body)["points"]["seq"]) > 0
        assert _get(url + "api/devices/no-such-device")[0] == 404
        status, kind, body = _get(url)
        assert (status, kind) == (200, "text/html; charset=utf-8")
        assert b'src="/static/dashboard.js"' in body and b'id="fleet"' in body
        assert b"http" not in body.replace(b"http://www.w3.org", b"")  # nothing from elsewhere
        for name, kind in (("dashboard.js", "text/javascript"), ("dashboard.css", "text/css")):
            status, got, body = _get(url + f"static/{name}")
            assert status == 200 and got.startswith(kind) and len(body) > 1000
            assert b"https://" not in body  # no CDN, no web fonts
        for escape in ("static/../fleet.py", "static/%2e%2e%2ffleet.py", "static/..%2f..%2fx",
                       "static/index.py", "static/nothing.js"):  # fmt: skip
            assert _get(url + escape)[0] == 404, escape
    finally:
        server.close()
