"""Wiring: a worker or a trainer built from its settings, and the status server beside it.

The one place that knows how the parts fit: the commands, the demo and the benchmarks call it
instead of assembling sources, sinks, models, hot swaps and checkpoints themselves.
"""

from __future__ import annotations

import gc
import logging
import os
import socket
from dataclasses import replace
from pathlib import Path

from models.registry import Registry
from pipeline.exceptions import ConfigError
from pipeline.observability.fleet import FleetView
from pipeline.observability.metrics import TrainerMetrics, WorkerMetrics, combined
from pipeline.observability.probes import trainer_checks, worker_checks
from pipeline.observability.server import HttpConfig, StatusServer
from pipeline.serving import Served, ServingConfig, ServingModel
from pipeline.settings import Settings, TrainerSettings
from pipeline.state.checkpoint import Checkpointer
from pipeline.swap.watcher import HotSwap, SwapConfig
from pipeline.trainer.service import Trainer
from pipeline.worker import Worker
from streams import clients
from streams.admin import TopicSpec, compacted, ensure_topics, partition_count, until_reachable
from streams.kafka_config import KafkaConfig
from streams.kafka_source import SourceConfig
from streams.protocols import Source

log = logging.getLogger(__name__)


def client(kafka: KafkaConfig, role: str) -> KafkaConfig:
    """The ``[kafka]`` settings for one kind of client (its ``client_id`` names the role)."""
    return replace(kafka, client_id=f"{kafka.client_id}-{role}")


def group_config(kafka: KafkaConfig, group_id: str, **more) -> SourceConfig:
    """A consumer group member's config: the ``[kafka]`` session timeout, heartbeats at a third."""
    timeout = kafka.session_timeout_ms
    return SourceConfig(group_id=group_id, session_timeout_ms=timeout,
                        heartbeat_interval_ms=max(1, timeout // 3), **more)  # fmt: skip


def control_source_config(group_id: str) -> SourceConfig:
    """Each worker hears every announcement: a group of its own, from the latest message on,
    never committed (so the broker forgets the group when the worker leaves)."""
    own = f"{group_id}-control-{socket.gethostname()}-{os.getpid()}"
    return SourceConfig(group_id=own, auto_offset_reset="latest")


def reach(kafka: KafkaConfig, attempt) -> None:
    """Run ``attempt`` until the cluster answers, for up to ``connect_timeout_s``."""

    def waiting(error, seconds_left: float) -> None:
        log.warning("waiting for Kafka at %s (%.0f s left): %s", kafka.bootstrap_servers,
                    seconds_left, error, extra={"bootstrap": kafka.bootstrap_servers})  # fmt: skip

    until_reachable(attempt, kafka.connect_timeout_s, waiting)


def load_served(config: ServingConfig) -> Served:
    """The models ``[model]`` names (loaded with ``safe_mode=True``)."""
    from models.io import load_model, load_refiner  # Keras: loaded with a model, not at start-up

    def from_file(path, version: str) -> ServingModel:
        return ServingModel.load(*load_model(path), version=version, refiner=load_refiner(path))

    def champion(name: str, ref: str) -> ServingModel:
        version = Registry(config.registry).get(name, ref)
        return from_file(version.model_path, f"{name}@{version.label}")

    stream = window = anomaly = None
    if config.stream_model:
        stream = from_file(config.stream_model, f"file:{config.stream_model}")
    elif config.registry:
        loaded = champion(config.name, config.ref)
        stream, window = (loaded, None) if loaded.slot == "stream" else (None, loaded)
    if config.window_model:
        window = from_file(config.window_model, f"file:{config.window_model}")
    if config.anomaly_model:
        anomaly = from_file(config.anomaly_model, f"file:{config.anomaly_model}")
    elif config.registry and config.anomaly_name:
        anomaly = champion(config.anomaly_name, "champion")
    if stream is None and window is None:
        raise ConfigError("no model: give --registry (and --name) or --stream-model/--window-model")
    return Served(stream, window, anomaly)


def check_served(config: ServingConfig) -> None:
    """The models ``[model]`` names exist (files, registry version), so that a mistake is said
    before the worker waits for Kafka or loads anything."""
    for key in ("stream_model", "window_model", "anomaly_model"):
        path = getattr(config, key)
        if path and not Path(path).is_file():
            raise ConfigError(f"[model] {key}: no such model file: {path}")
    if config.registry and not config.stream_model:
        Registry(config.registry).get(config.name, config.ref)
    if config.anomaly_name and not config.anomaly_model:
        if not config.registry:
            raise ConfigError("[model] anomaly_name is a registry name: give --registry too")
        Registry(config.registry).get(config.anomaly_name, "champion")
    if not (config.registry or config.stream_model or config.window_model):
        raise ConfigError("no model: give --registry (and --name) or --stream-model/--window-model")


def hot_swaps(
    model: ServingConfig, swap: SwapConfig, control: Source | None = None
) -> list[HotSwap]:
    """The hot swaps that follow the registry's champions, as ``[model]`` asks: of ``name``,
    and of ``anomaly_name`` (one control consumer wakes the first; the other polls)."""
    names = [model.name] if model.follows_champion else []
    names += [model.anomaly_name] if model.follows_detector else []
    registry = Registry(model.registry) if names else None
    return [HotSwap(registry, name, swap, control=control if i == 0 else None)
            for i, name in enumerate(names)]  # fmt: skip


def build_worker(settings: Settings, served: Served | None = None) -> Worker:
    """A worker on Kafka as the settings describe (topics created if missing), serving the
    ``[model]`` section's models or those ``served``."""
    k, w, m, c = settings.kafka, settings.worker, settings.model, settings.checkpoint
    if served is None:
        check_served(m)
    kafka = client(k, "worker")

    def topics() -> None:
        ensure_topics(
            kafka,
            [TopicSpec(t, k.partitions) for t in (w.input_topic, w.predictions_topic,
                                                  w.events_topic)]
            + [TopicSpec(w.dlq_topic, 1), TopicSpec(m.control_topic, 1)],
        )  # fmt: skip
        if c.enabled:
            partitions = partition_count(kafka, w.input_topic)
            ensure_topics(kafka, [compacted(c.topic, partitions)])
            if partition_count(kafka, c.topic) != partitions:
                raise ConfigError(
                    f"{c.topic} must have as many partitions as {w.input_topic} ({partitions}): "
                    "each keeps the states of one input partition"
                )

    reach(k, topics)
    stream, window, anomaly = served or load_served(m)
    channels = len((stream or window).meta.channels)
    config = replace(w, codec=replace(w.codec, channels=channels))
    listener = _Rebalance()
    source = clients.source(kafka, [w.input_topic], group_config(k, k.group_id), listener)
    control = None
    if m.follows_champion or m.follows_detector:
        control = clients.source(kafka, [m.control_topic], control_source_config(k.group_id))
    checkpoints = Checkpointer(clients.table(kafka, c.topic), c) if c.enabled else None
    listener.worker = Worker(source, clients.sink(kafka), stream, window, anomaly_model=anomaly,
                             config=config, swaps=hot_swaps(m, settings.swap, control),
                             checkpoints=checkpoints)  # fmt: skip
    settle_heap()
    return listener.worker


def settle_heap() -> None:
    """Exempt what is alive now from the cyclic garbage collector (``gc.freeze``): the modules,
    TensorFlow and the models, millions of objects that stay for the process's life. A full
    collection walks every tracked object; with them it stops the worker's loop for about
    200 ms (measured: a 10,000-device worker's p99 latency went from 354 to 149 ms)."""
    gc.collect()
    gc.freeze()


class _Rebalance:
    """Hands the consumer's rebalance callbacks to the worker (built after the consumer)."""

    worker: Worker | None = None

    def on_assigned(self, partitions) -> None:
        self.worker.on_assigned(partitions)

    def on_revoked(self, partitions) -> None:
        self.worker.on_revoked(partitions)


def build_trainer(settings: TrainerSettings) -> Trainer:
    """A trainer on Kafka as the settings describe (topics created if missing)."""
    k, cfg = settings.kafka, settings.trainer
    if not cfg.registry:
        raise ConfigError("the trainer needs a registry: --registry DIR (or [trainer] registry)")
    Registry(cfg.registry).get(cfg.name, "champion")  # said before waiting for Kafka
    kafka = client(k, "trainer")
    topics = [cfg.input_topic] + ([cfg.labels_topic] if cfg.labels_topic else [])
    specs = [TopicSpec(t, k.partitions) for t in topics] + [TopicSpec(cfg.control_topic, 1)]
    reach(k, lambda: ensure_topics(kafka, specs))
    # a retrain blocks the loop: the group must not take the trainer's partitions meanwhile
    poll_interval_ms = int((cfg.train.max_seconds + 300) * 1000)
    source = clients.source(
        kafka, topics, group_config(k, cfg.group_id, max_poll_interval_ms=poll_interval_ms)
    )
    return Trainer(source, Registry(cfg.registry), cfg, control=clients.sink(kafka),
                   metrics=TrainerMetrics())  # fmt: skip


def serve_worker(
    worker: Worker, config: HttpConfig, trainer: Trainer | None = None
) -> StatusServer:
    """Metrics and the fleet view as observers of ``worker`` (with a ``trainer``'s metrics
    beside them), served over HTTP; the started server."""
    metrics, fleet = WorkerMetrics(), FleetView()
    for model in (worker.stream_model, worker.window_model, worker.anomaly_model):
        if model is not None:
            metrics.serving(model.slot, model.version)
    exposed = metrics
    if trainer is not None:
        trainer.metrics = TrainerMetrics(process=False)
        exposed = combined(metrics, trainer.metrics)
    worker.observers += [metrics, fleet]
    health, ready = worker_checks(worker, config)
    server = StatusServer(config, exposed, health, ready, fleet=fleet)
    try:
        return server.start()
    except ConfigError:
        worker.observers = [o for o in worker.observers if o not in (metrics, fleet)]
        raise


def serve_trainer(trainer: Trainer, config: HttpConfig) -> StatusServer:
    """The trainer's metrics and probes over HTTP; the started server."""
    health, ready = trainer_checks(trainer, config)
    return StatusServer(config, trainer.metrics, health, ready).start()
