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
from pipeline.observability.report import BatchReport, Predictions, SwapReport
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
