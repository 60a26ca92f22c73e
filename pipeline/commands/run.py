"""``harstream run``: the Kafka worker. Joins the consumer group, predicts, emits, commits.

Settings come from --config FILE (TOML), HARSTREAM_<SECTION>_<KEY> environment variables and the
flags below, later ones winning. Every setting:

{settings}
"""

from __future__ import annotations

import argparse
import signal
import time

from pipeline.exceptions import ConfigError
from pipeline.progress import stderr
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
    p.add_argument("--max-seconds", type=float, default=None, help="stop after this long")
    p.set_defaults(run=run)


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
    from pipeline.worker import ServingModel

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
    from pipeline.hot_swap import HotSwap, SwapConfig
    from pipeline.sequencer import SequencerConfig
    from pipeline.state_store import StoreConfig
    from pipeline.worker import Worker, WorkerConfig
    from streams.admin import TopicSpec, ensure_topics
    from streams.codecs import CodecConfig
    from streams.kafka_sink import KafkaSink
    from streams.kafka_source import KafkaSource, SourceConfig

    k, w, m = settings.kafka, settings.worker, settings.model
    kafka = kafka_config(k, "harstream-worker")
    ensure_topics(
        kafka,
        [TopicSpec(w.input_topic, k.partitions)]
        + [TopicSpec(t, k.partitions) for t in (w.predictions_topic, w.events_topic)]
        + [TopicSpec(w.dlq_topic, 1), TopicSpec(m.control_topic, 1)],
    )
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
    source = KafkaSource(kafka, [w.input_topic], SourceConfig(group_id=k.group_id))
    swaps = []
    if m.registry and m.follow and not m.stream_model and m.ref == "champion":
        control = KafkaSource(kafka, [m.control_topic], control_source_config(k.group_id))
        swap_config = SwapConfig(poll_s=m.poll_s, prime=m.prime)
        swaps.append(HotSwap(Registry(m.registry), m.name, swap_config, control=control))
    return Worker(source, KafkaSink(kafka), stream, window, config=config, swaps=swaps)


def control_source_config(group_id: str):
    """Each worker hears every announcement: a group of its own, from the latest message on,
    never committed (so the broker forgets the group when the worker leaves)."""
    import os
    import socket

    from streams.kafka_source import SourceConfig

    own = f"{group_id}-control-{socket.gethostname()}-{os.getpid()}"
    return SourceConfig(group_id=own, auto_offset_reset="latest")


def kafka_config(k, client_id: str):
    """The :class:`~streams.kafka_config.KafkaConfig` of a ``[kafka]`` settings section."""
    from streams.kafka_config import KafkaConfig

    return KafkaConfig(
        bootstrap_servers=k.bootstrap_servers, security_protocol=k.security_protocol,
        ssl_cafile=k.ssl_cafile, ssl_certfile=k.ssl_certfile, ssl_keyfile=k.ssl_keyfile,
        sasl_mechanism=k.sasl_mechanism, sasl_plain_username=k.sasl_username,
        sasl_plain_password=k.sasl_password, client_id=client_id,
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from pipeline.hot_swap import one_blas_thread

    one_blas_thread()
    settings = load_settings(args.config, overrides=overrides(args))
    worker = build_worker(settings)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: worker.stop())
    k, w = settings.kafka, settings.worker
    stderr.print(f"harstream worker: {k.bootstrap_servers}, group {k.group_id}, {w.input_topic}")
    started = time.monotonic()
    if args.max_seconds:
        deadline = started + args.max_seconds
        while time.monotonic() < deadline and not worker.stopping:
            worker.run(timeout=min(5.0, deadline - time.monotonic()))
    else:
        while not worker.stopping:
            worker.run(timeout=5.0)
    stats = worker.stats
    stderr.print(f"stopped: {stats.messages:,} messages, {stats.samples:,} samples, "
                 f"{stats.predictions:,} predictions, rejected {dict(stats.rejected)}")  # fmt: skip
    worker.close()
    return 0
