"""The live dashboard in headless Chromium during a replay: the fleet view and a device timeline
show live data, and a screenshot is kept in ``test-artifacts/dashboard.png``.

Needs the Debian package ``chromium`` (``make system-deps`` installs it); ``CHROMIUM`` names another
binary.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import threading
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

from models.io import load_model
from pipeline import demo_models
from pipeline.observability.fleet import FleetView
from pipeline.observability.metrics import WorkerMetrics
from pipeline.observability.server import HttpConfig, StatusServer
from pipeline.serving import ServingModel
from pipeline.worker import Worker, WorkerConfig
from streams.datasets import SyntheticConfig, simulate
from streams.memory import MemoryBus, MemorySink, MemorySource
from streams.replay import FaultConfig, ReplayConfig, replay

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


class _Stopped(Exception):
    pass


class _UntilStopped:
    """A sink that ends the replay (by raising) once ``stop`` is set."""

    def __init__(self, sink: MemorySink, stop: threading.Event) -> None:
        self.sink, self.stop = sink, stop

    def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        if self.stop.is_set():
            raise _Stopped
        self.sink.send(topic, key, value)

    def flush(self, timeout_s: float | None = None) -> None:
        self.sink.flush(timeout_s)

    def close(self) -> None:
        self.sink.close()


class _Page(HTMLParser):
    """The attributes of every element with an id, the activity bars and the drawn lanes."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.ids: dict[str, dict[str, str | None]] = {}
        self.bars: dict[str, int] = {}
        self.segments = 0
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if "id" in a:
            self.ids[a["id"]] = a
        if "bar" in (a.get("class") or "").split():
            self.bars[a["data-activity"]] = int(a["data-count"])
        self.segments += tag == "rect" and "fill" in a


def _chromium(profile: Path, *args: str) -> subprocess.CompletedProcess:
    command = [
        CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--no-first-run", "--hide-scrollbars", f"--user-data-dir={profile}",
        "--window-size=1440,1100", "--virtual-time-budget=2500", *args,
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)


def _look(profile: Path, url: str) -> _Page:
    return _Page(_chromium(profile, "--dump-dom", url).stdout)


@pytest.fixture
def chromium() -> str:
    assert shutil.which(CHROMIUM), (
        f"headless Chromium not found at {CHROMIUM}: install the Debian package chromium "
        "(make system-deps, which make test runs) or set CHROMIUM to a Chromium binary"
    )
    return CHROMIUM


@pytest.fixture
def live_fleet():
    """A worker following a replay of 24 devices at 4x real time, with the dashboard served."""
    stream = ServingModel.load(*load_model(demo_models.STREAM_FILE), version="har@v0001")
    data = simulate(SyntheticConfig(devices=24, duration_s=240, orientation_jitter_deg=30,
                                    seed=4))  # fmt: skip
    bus, out = MemoryBus(partitions=2, capacity=100_000), MemoryBus(1, 10_000_000)
    fleet, stop, failures = FleetView(), threading.Event(), []
    worker = Worker(MemorySource(bus, ["sensor.raw"]), MemorySink(out), stream,
                    config=WorkerConfig(every_k=10, min_dwell=100), observers=[fleet])  # fmt: skip
    config = ReplayConfig(speed=4.0, faults=FaultConfig(corrupt=0.002, seed=4))

    def produce() -> None:
        with contextlib.suppress(_Stopped):
            replay(data, _UntilStopped(MemorySink(bus), stop), config)

    def consume() -> None:
        try:
            while not stop.is_set():
                worker.step()
        except Exception as exc:  # reported by the test
            failures.append(exc)

    threads = [threading.Thread(target=f, daemon=True) for f in (produce, consume)]
    for t in threads:
        t.start()
    server = StatusServer(HttpConfig(port=0), WorkerMetrics(), health=lambda: {"up": True},
                          fleet=fleet).start()  # fmt: skip
    try:
        yield server.url, fleet, failures
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
        server.close()
        worker.close()


def test_the_dashboard_shows_the_fleet_and_a_device_timeline_live(chromium, live_fleet, tmp_path):
    url, fleet, failures = live_fleet
    deadline = time.monotonic() + 30
    while fleet.snapshot()["samples"] < 24 * 50 * 30:  # half a minute of the fleet's samples
        assert time.monotonic() < deadline and not failures, failures or "the worker is stuck"
        time.sleep(0.2)
    profile = tmp_path / "chromium"
    device = fleet.snapshot()["device_list"][0]["device"]
    page = f"{url}#device={device}"

    first = _look(profile, page)
    time.sleep(1.0)
    second = _look(profile, page)
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "dashboard.png"
    shot.unlink(missing_ok=True)
    _chromium(profile, f"--screenshot={shot}", page)
    assert not failures, failures

    for page in (first, second):
        board = page.ids["fleet"]
        assert int(board["data-devices"]) == 24
        assert int(board["data-samples"]) > 0 and float(board["data-throughput"]) > 0
        assert set(page.bars) == set(fleet.classes) and sum(page.bars.values()) == 24
        assert page.ids["status"]["data-state"] == "live"
        assert page.ids["model"]["data-version"] == "har@v0001"
        line = page.ids["timeline"]
        assert line["data-device"] == device and int(line["data-points"]) > 10
        assert page.segments > 2  # coloured runs on the predicted and labelled lanes
    assert int(second.ids["fleet"]["data-samples"]) > int(first.ids["fleet"]["data-samples"])
    assert int(second.ids["timeline"]["data-last-seq"]) > int(
        first.ids["timeline"]["data-last-seq"]
    )
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000
