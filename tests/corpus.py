"""Records and malformed inputs shared by the codec tests (unit and over the broker), and small
helpers the process tests share."""

from __future__ import annotations

import json
import re
import struct

import numpy as np

from streams.codecs import HEADER_SIZE, BinaryCodec, CodecConfig, JsonCodec
from streams.record import Record


def sample_record(n=5, labels=True, seqs=False, device="phone-7", channels=3) -> Record:
    """A valid record with ``n`` samples (optionally labels and explicit sequence numbers)."""
    rng = np.random.default_rng(n)
    return Record(
        device=device,
        seq=1000,
        t0_ms=1_732_550_400_000,
        rate_hz=50.0,
        values=rng.normal(size=(n, channels)).astype(np.float32),
        labels=np.arange(n, dtype=np.int16) % 2 if labels else None,
        seqs=np.array([1000, 1001, 1005, 1006, 1010][:n], dtype=np.int64) if seqs else None,
    )


def _binary_bad(reason: str, config: CodecConfig) -> bytes | None:
    codec = BinaryCodec(config)
    good = codec.encode(sample_record())
    header = list(struct.unpack_from("<2sBBHHIqqf", good))
    body = good[HEADER_SIZE:]

    def with_header(**changes):
        names = ["magic", "ver", "flags", "ch", "dlen", "n", "seq", "t0", "rate"]
        h = header.copy()
        for k, v in changes.items():
            h[names.index(k)] = v
        return struct.pack("<2sBBHHIqqf", *h) + body

    nan = sample_record()
    nan.values[2, 1] = np.nan
    seqs = sample_record(seqs=True)
    seqs.seqs[3] = seqs.seqs[2]
    return {
        "truncated": good[:-3],
        "bad_magic": b"XX" + good[2:],
        "bad_version": good[:2] + bytes([9]) + good[3:],
        "channel_mismatch": codec.encode(Record("d", 0, 0, 50.0, np.zeros((5, 4), np.float32))),
        "non_finite": codec.encode(nan),
        "oversize": codec.encode(
            Record("d", 0, 0, 50.0, np.zeros((config.max_samples + 1, 3), np.float32))
        ),
        "empty_chunk": codec.encode(Record("d", 0, 0, 50.0, np.zeros((0, 3), np.float32))),
        "non_increasing_seq": codec.encode(seqs),
        "bad_value": with_header(rate=-50.0),
    }.get(reason)


def _json_bad(reason: str, config: CodecConfig) -> bytes | None:
    good = json.loads(JsonCodec(config).encode(sample_record()))

    def changed(**kv) -> bytes:
        obj = {**good, **kv}
        return json.dumps({k: v for k, v in obj.items() if v is not ...}).encode()

    samples = good["samples"]
    return {
        "truncated": None,
        "bad_version": changed(v=2),
        "channel_mismatch": changed(samples=[row + [0.0] for row in samples]),
        "non_finite": changed(samples=[samples[0], [float("inf"), 0.0, 0.0]]),
        "oversize": changed(samples=[samples[0]] * (config.max_samples + 1)),
        "invalid_json": b'{"device": "d1", "seq": 1,',
        "missing_field": changed(rate_hz=...),
        "bad_field_type": changed(seq="12"),
        "bad_value": changed(labels=["RUN"] * 5),
        "empty_chunk": changed(samples=[]),
        "non_increasing_seq": changed(seqs=[1000, 1002, 1002, 1003, 1004]),
    }.get(reason)


def bad_input(codec: str, reason: str, config: CodecConfig) -> bytes | None:
    """Bytes the ``codec`` ("binary" or "json") must reject with ``reason`` (None: impossible).

    ``config`` must expect 3 channels and know the activity names "SIT" and "WALK".
    """
    return {"binary": _binary_bad, "json": _json_bad}[codec](reason, config)


TINY_META_ARGS = dict(
    channels=("x", "y", "z"),
    classes=("A", "B"),
    rate_hz=50.0,
    mean=(0.0, 0.0, 0.0),
    std=(1.0, 1.0, 1.0),
    window=8,
    stride=4,
)


def tiny_model_file(directory, cell: str = "lstm"):
    """A tiny window model (8 x 3 -> 2 classes) in ``directory/tiny.keras``: (model, meta, path)."""
    import keras

    from models.io import save_model
    from models.spec import ModelMeta, ModelSpec

    layer = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU}[cell]
    model = keras.Sequential(
        [keras.Input((8, 3)), layer(4), keras.layers.Dense(2, activation="softmax")]
    )
    meta = ModelMeta(spec=ModelSpec(cell=cell, hidden=4), **TINY_META_ARGS)
    return model, meta, save_model(model, meta, directory / "tiny.keras")


def dataset_slice(data, start: int, end: int | None, devices=None):
    """Samples ``start:end`` of each stream (or of ``devices``' streams), as a dataset."""
    from streams.datasets.base import DeviceStream, StreamDataset

    part, wanted = slice(start, end), set(devices) if devices is not None else None
    cuts = tuple(
        DeviceStream(
            s.device, s.values[part], s.labels[part], s.rate_hz, s.t0_ms, s.user, s.sequence()[part]
        )  # fmt: skip
        for s in data.streams
        if (wanted is None or s.device in wanted) and len(s.values[part])
    )
    return StreamDataset(data.name, data.channels, data.activities, data.rate_hz, cuts)


def status_url(log: str) -> str | None:
    """The status server's address a ``harstream run|trainer`` process logged, if it did yet."""
    found = re.search(r"on\s+(http://127\.0\.0\.1:\d+/)", log)
    return found.group(1) if found else None


def wait_ready(log, process, timeout_s: float = 120.0) -> str:
    """Wait until the ``harstream run|trainer`` ``process`` logging to ``log`` answers 200 on
    ``/readyz``; its status address. Fails if it exits or the time runs out."""
    import time
    import urllib.error
    import urllib.request
    from pathlib import Path

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = Path(log).read_text()
        assert process.poll() is None, "it exited: " + text[-3000:]
        url = status_url(text)
        if url is not None:
            try:
                with urllib.request.urlopen(url + "readyz", timeout=5) as r:
                    if r.status == 200:
                        return url
            except urllib.error.URLError:  # 503 while not ready (HTTPError is a URLError)
                pass
        time.sleep(0.2)
    raise AssertionError(f"not ready within {timeout_s:g} s: " + Path(log).read_text()[-3000:])


def scrape(url: str) -> dict[str, float]:
    """``/metrics`` of a status server: sample name with its labels -> value."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url + "metrics", timeout=5) as r:
        text = r.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


def worker_toml(bootstrap: str, unique, extra: str = "", checkpoint=(), kafka=(), **worker) -> str:
    """``harstream run`` settings on topics of their own: ``unique(name)`` names each topic and
    the group; ``worker`` sets [worker] keys (``input_topic=...`` ...), ``checkpoint`` and
    ``kafka`` more [checkpoint] and [kafka] ones (mappings, e.g. ``kafka={"client": ...}``);
    ``extra`` (other sections) is appended."""
    keys = {"events_topic": unique("ev"), "dlq_topic": unique("dlq"), **worker}
    state = {"topic": unique("state"), **dict(checkpoint)}
    return "\n".join(
        [f'[kafka]\nbootstrap_servers = "{bootstrap}"\ngroup_id = "{unique("g")}"']
        + [f"{key} = {json.dumps(value)}" for key, value in dict(kafka).items()]
        + ["[worker]"]
        + [f"{key} = {json.dumps(value)}" for key, value in keys.items()]
        + ["[checkpoint]"]
        + [f"{key} = {json.dumps(value)}" for key, value in state.items()]
        + [extra, ""]
    )


def start_harstream(log, *args: str):
    """``harstream ARGS...`` as a process of its own, its output in the file ``log`` (a pipe
    nobody reads could fill up and stall it)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    with Path(log).open("w") as out:
        env = {**os.environ, "PYTHONPATH": str(repo)}
        command = [sys.executable, "-m", "pipeline.cli", *args]
        return subprocess.Popen(command, stdout=out, stderr=out, env=env)


def stream_model_file(data, path, cell: str = "gru", hidden: int = 8):
    """A small stream model (random weights) for ``data``'s channels and classes, saved at
    ``path``; the path."""
    from models.io import save_model
    from models.spec import ModelMeta, ModelSpec
    from models.zoo import build_model

    spec = ModelSpec(setup="stream", cell=cell, hidden=hidden)
    n = len(data.channels)
    meta = ModelMeta(spec, data.channels, data.activities, 50.0, (0,) * n, (1,) * n, 64, 1)
    return save_model(build_model(spec, meta), meta, path)


def model_steps(stream, model_hz: float = 50.0):
    """The input sample each model step of ``stream`` names once the worker has resampled it
    (all of it, sent in any records): their sequence numbers."""
    import numpy as np

    from pipeline.worker.resampler import Resampler
    from pipeline.worker.sequencer import DeviceRun

    seqs = stream.sequence()
    times = stream.t0_ms + seqs * 1000.0 / stream.rate_hz
    run = DeviceRun(
        stream.device, seqs, stream.values, stream.labels, times, rate_hz=stream.rate_hz
    )
    made, _ = Resampler(model_hz, stream.values.shape[1]).resample([run], np.array([0]))
    return made[0].seqs if made else np.zeros(0, np.int64)
