"""Command-line flags for Kafka connections, SSL and SASL included."""

from __future__ import annotations

import argparse
import os
import typing

from pipeline.cli.checks import input_file, only_with
from pipeline.exceptions import ConfigError
from streams.kafka_config import KafkaClient, KafkaConfig, SaslMechanism, SecurityProtocol

CLIENT_ENV = "HARSTREAM_KAFKA_CLIENT"
"""the client library when ``--kafka-client`` is not given (as ``[kafka] client`` for run)"""

FLAGS = {
    dest: "--" + dest.replace("_", "-")
    for dest in ("kafka_client", "security_protocol", "ssl_cafile", "ssl_certfile", "ssl_keyfile",
                 "sasl_mechanism", "sasl_username", "sasl_password_env")
}  # fmt: skip


def add_kafka_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags for every :class:`KafkaConfig` field (passwords may come from the environment)."""
    g = parser.add_argument_group("Kafka connection (SSL/SASL passed through to the clients)")
    g.add_argument(
        "--kafka-client",
        choices=typing.get_args(KafkaClient),
        help=f"client library (default: ${CLIENT_ENV}, else kafka-python; confluent needs "
        "pip install 'harstream[fast]')",
    )
    g.add_argument("--security-protocol", choices=typing.get_args(SecurityProtocol))
    g.add_argument("--ssl-cafile")
    g.add_argument("--ssl-certfile")
    g.add_argument("--ssl-keyfile")
    g.add_argument("--sasl-mechanism", choices=typing.get_args(SaslMechanism))
    g.add_argument("--sasl-username")
    g.add_argument(
        "--sasl-password-env",
        metavar="VAR",
        help="name of the environment variable holding the SASL password (keeps it off ps)",
    )


def check_kafka_arguments(args: argparse.Namespace, used: bool, where: str) -> None:
    """Before connecting: refuse these flags when no Kafka client is made (``used`` false;
    they apply only ``where``), a missing SSL file, an unset password variable."""
    only_with(args, used, where, **FLAGS)
    for dest in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
        if getattr(args, dest):
            input_file(getattr(args, dest), FLAGS[dest])
    if args.sasl_password_env and args.sasl_password_env not in os.environ:
        raise ConfigError(f"--sasl-password-env: ${args.sasl_password_env} is not set")


def kafka_config_from_args(args: argparse.Namespace, bootstrap: str) -> KafkaConfig:
    """The :class:`KafkaConfig` the flags describe, connecting to ``bootstrap``."""
    password = os.environ.get(args.sasl_password_env) if args.sasl_password_env else None
    return KafkaConfig(
        bootstrap_servers=bootstrap,
        client=args.kafka_client or os.environ.get(CLIENT_ENV) or "kafka-python",
        security_protocol=args.security_protocol or "PLAINTEXT",
        ssl_cafile=args.ssl_cafile,
        ssl_certfile=args.ssl_certfile,
        ssl_keyfile=args.ssl_keyfile,
        sasl_mechanism=args.sasl_mechanism,
        sasl_plain_username=args.sasl_username,
        sasl_plain_password=password,
    )
