"""``harstream run``: the Kafka worker. Joins the consumer group, predicts, emits, commits.

Settings come from --config FILE (TOML), HARSTREAM_<SECTION>_<KEY> environment variables and the
flags below, later ones winning. Every setting:

{settings}
"""

from __future__ import annotations

import argparse
import logging

from pipeline.cli.checks import non_negative_float
from pipeline.cli.settings_args import (
    add_http_flags,
    add_service_flags,
    overrides,
    run_until_stopped,
)

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="run the Kafka worker",
        description=_description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_service_flags(p)
    p.add_argument("--group", dest="kafka.group_id", help="consumer group")
    p.add_argument("--input-topic", dest="worker.input_topic")
    p.add_argument("--emit", dest="worker.emit", choices=["every", "every_k", "on_change"])
    p.add_argument("--every-k", dest="worker.every_k", type=int)
    p.add_argument("--delay-ms", dest="worker.delay_ms", type=non_negative_float,
                   help="emit each sample's label this many ms late, from the samples up to "
                   "that after it: the fixed-lag HMM smoother where the model's grammar chose it, "
                   "else the mean over both sides (default 0: at once)")  # fmt: skip
    p.add_argument("--registry", dest="model.registry", help="registry root (champion is served)")
    p.add_argument("--name", dest="model.name", help="registry model name")
    p.add_argument("--stream-model", dest="model.stream_model", help="stream .keras file")
    p.add_argument("--window-model", dest="model.window_model", help="window .keras file")
    p.add_argument("--anomaly-model", dest="model.anomaly_model",
                   help="seq2seq .keras file: an anomaly detector beside the classifiers (one "
                   'kind "anomaly" message per window)')  # fmt: skip
    p.add_argument(
        "--anomaly-name",
        dest="model.anomaly_name",
        help="registry name of an anomaly detector (its champion is served)",
    )
    p.add_argument("--no-follow", dest="model.follow", action="store_const", const=False,
                   help="keep serving the loaded version (no hot swap)")  # fmt: skip
    add_http_flags(p)
    p.add_argument("--max-seconds", type=float, default=None, help="stop after this long")
    p.set_defaults(run=run)


def _description() -> str:
    from pipeline.settings import describe  # the components' configs: for --help only

    return __doc__.format(settings=describe())


def run(args: argparse.Namespace) -> int:
    from pipeline import wiring  # the worker's parts (Kafka clients, models): not for --help
    from pipeline.settings import load_settings  # the components' configs: not for --help
    from pipeline.swap.watcher import one_blas_thread  # threadpoolctl: not for --help

    one_blas_thread()
    settings = load_settings(args.config, overrides=overrides(args))
    worker = wiring.build_worker(settings)
    try:
        server = wiring.serve_worker(worker, settings.http)
    except Exception:
        worker.close()
        raise
    k, w = settings.kafka, settings.worker
    log.info("harstream worker: %s, group %s, %s; metrics and dashboard on %s",
             k.bootstrap_servers, k.group_id, w.input_topic, server.url,
             extra={"bootstrap": k.bootstrap_servers, "group": k.group_id,
                    "topic": w.input_topic, "url": server.url})  # fmt: skip
    run_until_stopped(worker, args.max_seconds)
    stats = worker.stats
    log.info("stopped: %s messages, %s samples, %s predictions, %s anomalous windows of %s "
             "scored, rejected %s", f"{stats.messages:,}", f"{stats.samples:,}",
             f"{stats.predictions:,}", f"{stats.anomalies:,}", f"{stats.anomaly_windows:,}",
             dict(stats.rejected),
             extra={"messages": stats.messages, "samples": stats.samples,
                    "predictions": stats.predictions, "anomaly_windows": stats.anomaly_windows,
                    "anomalies": stats.anomalies,
                    "rejected": dict(stats.rejected)})  # fmt: skip
    worker.close()
    server.close()
    return 0
