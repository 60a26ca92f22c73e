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
import logging

from pipeline.cli.settings_args import (
    add_http_flags,
    add_service_flags,
    overrides,
    run_until_stopped,
)

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "trainer",
        help="run the trainer service (retrain, gate, promote)",
        description=_description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_service_flags(p)
    p.add_argument("--registry", dest="trainer.registry", help="registry root (required)")
    p.add_argument("--name", dest="trainer.name", help="registry model name")
    p.add_argument("--mode", dest="trainer.mode", choices=["finetune", "scratch"])
    p.add_argument("--anomaly-name", dest="trainer.anomaly_name",
                   help="registry name of a seq2seq anomaly detector to retrain beside the "
                   "classifier (gated on its mean error on held-out devices)")  # fmt: skip
    p.add_argument("--state-dir", dest="trainer.state_dir", help="where the buffer is kept")
    p.add_argument("--every-windows", dest="trainer.every_windows", type=int)
    p.add_argument("--interval-s", dest="trainer.interval_s", type=float)
    p.add_argument("--margin", dest="trainer.gate.margin", type=float, help="accuracy the "
                   "candidate must gain over the champion to be promoted")  # fmt: skip
    add_http_flags(p)
    p.add_argument("--max-seconds", type=float, default=None, help="stop after this long")
    p.set_defaults(run=run)


def _description() -> str:
    from pipeline.settings import TRAINER_SECTIONS, describe  # the configs: for --help only

    return __doc__.format(settings=describe(TRAINER_SECTIONS))


def run(args: argparse.Namespace) -> int:
    from pipeline import wiring  # the trainer's parts (Kafka clients, models): not for --help
    from pipeline.settings import load_trainer_settings  # the configs: not for --help

    settings = load_trainer_settings(args.config, overrides=overrides(args))
    trainer = wiring.build_trainer(settings)
    try:
        server = wiring.serve_trainer(trainer, settings.http)
    except Exception:
        trainer.close()
        raise
    cfg = trainer.config
    log.info("harstream trainer: %s v%s learning from %s %s, %s; metrics on %s", cfg.name,
             trainer.champion_version, settings.kafka.bootstrap_servers, cfg.input_topic,
             cfg.labels_topic, server.url,
             extra={"model": cfg.name, "version": f"{cfg.name}@v{trainer.champion_version:04d}",
                    "bootstrap": settings.kafka.bootstrap_servers, "topic": cfg.input_topic,
                    "labels_topic": cfg.labels_topic, "url": server.url})  # fmt: skip
    run_until_stopped(trainer, args.max_seconds)
    stats = trainer.stats
    log.info("stopped: %s records, %s windows buffered, %d retrains, %d promoted (the anomaly "
             "detector: %d promoted)", f"{stats.records:,}", f"{len(trainer.buffer):,}",
             len(stats.retrains), stats.promotions, stats.detector_promotions,
             extra={"records": stats.records, "buffered": len(trainer.buffer),
                    "retrains": len(stats.retrains), "promotions": stats.promotions,
                    "detector_promotions": stats.detector_promotions})  # fmt: skip
    trainer.close()
    server.close()
    return 0
