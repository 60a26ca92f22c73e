"""``harstream trainer``: retrain the champion on labelled streams, gate, promote, announce.

It consumes the sensor topic (labels inside records) and the labels topic (time ranges keyed by
device) in its own consumer group, keeps a balanced training buffer (persisted in
``trainer.state_dir``), retrains on a trigger, and promotes a candidate only when it beats the
champion on held-out devices; promotions are announced on the control topic, where the workers
hear them. Settings come from --config FILE (TOML), HARSTREAM_<SECTION>_<KEY> environment
variables and the flags below, later ones winning. Every setting:

{settings}
"""

from __future__ import annotations

import argparse
import signal
from dataclasses import dataclass

from pipeline.cli.commands.run import add_http_flags
from pipeline.cli.progress import stderr
from pipeline.observability.server import HttpConfig
from pipeline.settings import KafkaSection, describe, load_sections
from pipeline.trainer.buffer import BufferConfig
from pipeline.trainer.drift import PageHinkleyConfig
from pipeline.trainer.gate import GateConfig
from pipeline.trainer.labelling import JoinConfig
from pipeline.trainer.service import TrainerConfig


@dataclass(frozen=True)
class TrainerHttp(HttpConfig):
    port: int = 9401


SECTIONS = {"kafka": KafkaSection, "trainer": TrainerConfig,
            "buffer": BufferConfig, "labels": JoinConfig, "gate": GateConfig,
            "drift": PageHinkleyConfig, "http": TrainerHttp}  # fmt: skip


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "trainer",
        help="run the trainer service (retrain, gate, promote)",
        description=__doc__.format(settings=describe(SECTIONS)),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", help="TOML settings file")
    p.add_argument("--bootstrap", dest="kafka.bootstrap_servers", help="Kafka host:port[,...]")
    p.add_argument("--registry", dest="trainer.registry", help="registry root (required)")
    p.add_argument("--name", dest="trainer.name", help="registry model name")
    p.add_argument("--mode", dest="trainer.mode", choices=["finetune", "scratch"])
    p.add_argument("--state-dir", dest="trainer.state_dir", help="where the buffer is kept")
    p.add_argument("--every-windows", dest="trainer.every_windows", type=int)
    p.add_argument("--interval-s", dest="trainer.interval_s", type=float)
    p.add_argument("--margin", dest="gate.margin", type=float, help="accuracy the candidate "
                   "must gain over the champion to be promoted")  # fmt: skip
    add_http_flags(p)
    p.add_argument("--max-seconds", type=float, default=None, help="stop after this long")
    p.set_defaults(run=run)


def build_trainer(sections: dict):
    """A trainer on Kafka as the settings describe (topics created if missing)."""
    from dataclasses import replace

    from models.registry import Registry
    from pipeline.cli.commands.run import group_config, kafka_config, waiting_for
    from pipeline.exceptions import ConfigError
    from pipeline.observability.metrics import TrainerMetrics
    from pipeline.trainer.service import Trainer
    from streams.admin import TopicSpec, ensure_topics, until_reachable
    from streams.kafka_sink import KafkaSink
    from streams.kafka_source import KafkaSource

    k, cfg = sections["kafka"], sections["trainer"]
    if not cfg.registry:
        raise ConfigError("the trainer needs a registry: --registry DIR (or [trainer] registry)")
    cfg = replace(cfg, buffer=sections["buffer"], join=sections["labels"],
                  gate=sections["gate"], page_hinkley=sections["drift"])  # fmt: skip
    kafka = kafka_config(k, "harstream-trainer")
    topics = [cfg.input_topic] + ([cfg.labels_topic] if cfg.labels_topic else [])
    specs = [TopicSpec(t, k.partitions) for t in topics] + [TopicSpec(cfg.control_topic, 1)]
    until_reachable(lambda: ensure_topics(kafka, specs), k.connect_timeout_s,
                    waiting_for(k.bootstrap_servers))  # fmt: skip
    source_config = group_config(
        k, cfg.group_id, max_poll_interval_ms=int((cfg.max_train_s + 300) * 1000)
    )
    source = KafkaSource(kafka, topics, source_config)
    return Trainer(source, Registry(cfg.registry), cfg, control=KafkaSink(kafka),
                   metrics=TrainerMetrics())  # fmt: skip


def run(args: argparse.Namespace) -> int:

    from pipeline.cli.commands.run import overrides, run_until_stopped
    from pipeline.exceptions import ConfigError
    from pipeline.observability.probes import trainer_checks
    from pipeline.observability.server import StatusServer

    sections = load_sections(SECTIONS, args.config, overrides=overrides(args))
    trainer = build_trainer(sections)
    health, ready = trainer_checks(trainer, sections["http"])
    try:
        server = StatusServer(sections["http"], trainer.metrics, health, ready).start()
    except ConfigError:
        trainer.close()
        raise
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: trainer.stop())
    cfg = trainer.config
    where = f"{sections['kafka'].bootstrap_servers} {cfg.input_topic}, {cfg.labels_topic}"
    stderr.print(f"harstream trainer: {cfg.name} v{trainer.champion_version} learning from "
                 f"{where}; metrics on {server.url}")  # fmt: skip
    run_until_stopped(trainer, args.max_seconds)
    stats = trainer.stats
    stderr.print(f"stopped: {stats.records:,} records, {len(trainer.buffer):,} windows buffered, "
                 f"{len(stats.retrains)} retrains, {stats.promotions} promoted")  # fmt: skip
    trainer.close()
    server.close()
    return 0
