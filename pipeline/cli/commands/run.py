"""``harstream run``: the Kafka worker. Joins the consumer group, predicts, emits, commits.

Settings come from --config FILE (TOML), HARSTREAM_<SECTION>_<KEY> environment variables and the
flags below, later ones winning. Every setting:

{settings}
"""

from __future__ import annotations

import argparse
import signal
import time

from pipeline.cli.progress import stderr
from pipeline.exceptions import ConfigError
from pipeline.settings import Settings, describe, load_settings


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="run the Kafka worker",
        description=__doc__.format(settings=describe()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", help="TOML settings file")
    p.add_argument("--bootstrap", dest="kafka.bootstrap_servers", help="Kafka host:port[,...]")
    p.add_argument("--group", dest="kafka.group_id", help="consumer group")
    p.add_argument("--input-topic", dest="worker.input_topic")
    p.add_argument("--emit", dest="worker.emit", choices=["every", "every_k", "on_change"])
    p.add_argument("--every-k", dest="worker.every_k", type=int)
    p.add_argument("--registry", dest="model.registry", help="registry root (champion is served)")
    p.add_argument("--name", dest="model.name", help="registry model name")
    p.add_argument("--stream-model", dest="model.stream_model", help="stream .keras file")
    p.add_argument("--window-model", dest="model.window_model", help="window .keras file")
    p.add_argument("--no-follow", dest="model.follow", action="store_const", const=False,
                   help="keep serving the loaded version (no hot swap)")  # fmt: skip
    add_http_flags(p)
    p.add_argument("--max-seconds", type=float, default=None, help="stop after this long")
    p.set_defaults(run=run)


def add_http_flags(p: argparse.ArgumentParser) -> None:
    """``--http-host`` and ``--http-port``: where metrics, probes and the dashboard are served."""
    p.add_argument("--http-host", dest="http.host",
                   help="address of /metrics, /healthz, /readyz (default 127.0.0.1)")  # fmt: skip
    p.add_argument("--http-port", dest="http.port", type=int, help="their port (0: a free one)")


def overrides(args: argparse.Namespace) -> dict[str, dict]:
    """The ``section.key`` flags that were given, as settings overrides."""
    out: dict[str, dict] = {}
    for key, value in vars(args).items():
        if "." in key and value is not None:
            section, name = key.split(".", 1)
            out.setdefault(section, {})[name] = value
    return out


def serving_models(settings: Settings):
    """The stream and window models the settings name (loaded with ``safe_mode=True``)."""
    from models.io import load_model
    from models.registry import Registry
    from pipeline.serving import ServingModel

    m = settings.model
    stream = window = None
    if m.stream_model:
        stream = ServingModel.load(*load_model(m.stream_model), version=f"file:{m.stream_model}")
    elif m.registry:
        version = Registry(m.registry).get(m.name, m.ref)
        model, meta = load_model(version.model_path)
        loaded = ServingModel.load(model, meta, version=f"{m.name}@{version.label}")
        stream, window = (loaded, None) if meta.spec.setup == "stream" else (None, loaded)
    if m.window_model:
        window = ServingModel.load(*load_model(m.window_model), version=f"file:{m.window_model}")
    if stream is None and window is None:
        raise ConfigError("no model: give --registry (and --name) or --stream-model/--window-model")
    return stream, window


def build_worker(settings: Settings):
    """A worker on Kafka as the settings describe (topics created if missing)."""
    from models.registry import Registry
    from pipeline.state.checkpoint import Checkpointer
    from pipeline.swap.watcher import HotSwap, SwapConfig
    from pipeline.worker.loop import Worker, WorkerConfig
    from pipeline.worker.sequencer import SequencerConfig
    from pipeline.worker.state_store import StoreConfig
    from streams.admin import TopicSpec, compacted, ensure_topics, partition_count, until_reachable
    from streams.codecs import CodecConfig
    from streams.kafka_sink import KafkaSink
    from streams.kafka_source import KafkaSource
    from streams.kafka_table import KafkaTable

    k, w, m, c = settings.kafka, settings.worker, settings.model, settings.checkpoint
    kafka = kafka_config(k, "harstream-worker")

    def topics() -> None:
        ensure_topics(
            kafka,
            [TopicSpec(w.input_topic, k.partitions)]
            + [TopicSpec(t, k.partitions) for t in (w.predictions_topic, w.events_topic)]
            + [TopicSpec(w.dlq_topic, 1), TopicSpec(m.control_topic, 1)],
        )
        if c.enabled:
            partitions = partition_count(kafka, w.input_topic)
            ensure_topics(kafka, [compacted(c.topic, partitions)])
            if partition_count(kafka, c.topic) != partitions:
                raise ConfigError(
                    f"{c.topic} must have as many partitions as {w.input_topic} ({partitions}): "
                    "each keeps the states of one input partition"
                )

    until_reachable(topics, k.connect_timeout_s, waiting_for(k.bootstrap_servers))
    state_table = KafkaTable(kafka, c.topic) if c.enabled else None
    stream, window = serving_models(settings)
    channels = len((stream or window).meta.channels)
    config = WorkerConfig(
        input_topic=w.input_topic, predictions_topic=w.predictions_topic,
        events_topic=w.events_topic, dlq_topic=w.dlq_topic, emit=w.emit, every_k=w.every_k,
        min_dwell=w.min_dwell, max_records=w.max_records,
        codec=CodecConfig(channels=channels),
        store=StoreConfig(max_gap=w.max_gap, idle_ttl_s=w.idle_ttl_s, max_devices=w.max_devices),
        sequencer=SequencerConfig(late=w.late, hold_s=w.hold_s),
    )  # fmt: skip
    listener = _Rebalance()
    source = KafkaSource(kafka, [w.input_topic], group_config(k, k.group_id), listener)
    swaps = []
    if m.registry and m.follow and not m.stream_model and m.ref == "champion":
        control = KafkaSource(kafka, [m.control_topic], control_source_config(k.group_id))
        swap_config = SwapConfig(poll_s=m.poll_s, prime=m.prime)
        swaps.append(HotSwap(Registry(m.registry), m.name, swap_config, control=control))
    checkpoints = Checkpointer(state_table, c) if state_table is not None else None
    listener.worker = Worker(source, KafkaSink(kafka), stream, window, config=config,
                             swaps=swaps, checkpoints=checkpoints)  # fmt: skip
    return listener.worker


class _Rebalance:
    """Hands the consumer's rebalance callbacks to the worker (built after the consumer)."""

    worker = None

    def on_assigned(self, partitions) -> None:
        self.worker.on_assigned(partitions)

    def on_revoked(self, partitions) -> None:
        self.worker.on_revoked(partitions)


def control_source_config(group_id: str):
    """Each worker hears every announcement: a group of its own, from the latest message on,
    never committed (so the broker forgets the group when the worker leaves)."""
    import os
    import socket

    from streams.kafka_source import SourceConfig

    own = f"{group_id}-control-{socket.gethostname()}-{os.getpid()}"
    return SourceConfig(group_id=own, auto_offset_reset="latest")


def group_config(k, group_id: str, **more):
    """The :class:`~streams.kafka_source.SourceConfig` of a consumer group member under the
    ``[kafka]`` section ``k`` (its session timeout, heartbeats at a third of it)."""
    from streams.kafka_source import SourceConfig

    timeout = k.session_timeout_ms
    return SourceConfig(group_id=group_id, session_timeout_ms=timeout,
                        heartbeat_interval_ms=max(1, timeout // 3), **more)  # fmt: skip


def waiting_for(bootstrap: str):
    """The ``on_retry`` of :func:`~streams.admin.until_reachable` that says so on stderr."""

    def say(error, seconds_left: float) -> None:
        stderr.print(f"waiting for Kafka at {bootstrap} ({seconds_left:.0f} s left): {error}")

    return say


def kafka_config(k, client_id: str):
    """The :class:`~streams.kafka_config.KafkaConfig` of a ``[kafka]`` settings section."""
    from streams.kafka_config import KafkaConfig

    return KafkaConfig(
        bootstrap_servers=k.bootstrap_servers, security_protocol=k.security_protocol,
        ssl_cafile=k.ssl_cafile, ssl_certfile=k.ssl_certfile, ssl_keyfile=k.ssl_keyfile,
        sasl_mechanism=k.sasl_mechanism, sasl_plain_username=k.sasl_username,
        sasl_plain_password=k.sasl_password, client_id=client_id,
    )  # fmt: skip


def run_until_stopped(loop, max_seconds: float | None) -> None:
    """``loop.run`` (a worker's or the trainer's) until it is stopped, or ``max_seconds``."""
    deadline = time.monotonic() + max_seconds if max_seconds else None
    while not loop.stopping and (deadline is None or time.monotonic() < deadline):
        loop.run(timeout=min(5.0, deadline - time.monotonic()) if deadline else 5.0)


def serve_status(worker, config):
    """Metrics and the fleet view as observers of ``worker``, served over HTTP; the server."""
    from pipeline.observability.fleet import FleetView
    from pipeline.observability.metrics import WorkerMetrics
    from pipeline.observability.probes import worker_checks
    from pipeline.observability.server import StatusServer

    metrics, fleet = WorkerMetrics(), FleetView()
    for slot, model in (("stream", worker.stream_model), ("window", worker.window_model)):
        if model is not None:
            metrics.serving(slot, model.version)
    worker.observers += [metrics, fleet]
    health, ready = worker_checks(worker, config)
    return StatusServer(config, metrics, health, ready, fleet=fleet).start()


def run(args: argparse.Namespace) -> int:
    from pipeline.swap.watcher import one_blas_thread

    one_blas_thread()
    settings = load_settings(args.config, overrides=overrides(args))
    worker = build_worker(settings)
    try:
        server = serve_status(worker, settings.http)
    except ConfigError:
        worker.close()
        raise
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: worker.stop())
    k, w = settings.kafka, settings.worker
    stderr.print(f"harstream worker: {k.bootstrap_servers}, group {k.group_id}, {w.input_topic}; "
                 f"metrics and dashboard on {server.url}")  # fmt: skip
    run_until_stopped(worker, args.max_seconds)
    stats = worker.stats
    stderr.print(f"stopped: {stats.messages:,} messages, {stats.samples:,} samples, "
                 f"{stats.predictions:,} predictions, rejected {dict(stats.rejected)}")  # fmt: skip
    worker.close()
    server.close()
    return 0
