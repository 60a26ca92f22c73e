"""Command-line flags for Kafka connections, SSL and SASL included."""

from __future__ import annotations

import argparse
import os
import typing

from streams.kafka_config import KafkaConfig, SaslMechanism, SecurityProtocol


def add_kafka_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags for every :class:`KafkaConfig` field (passwords may come from the environment)."""
    g = parser.add_argument_group("Kafka connection (SSL/SASL passed through to the clients)")
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


def kafka_config_from_args(args: argparse.Namespace, bootstrap: str) -> KafkaConfig:
    """The :class:`KafkaConfig` the flags describe, connecting to ``bootstrap``."""
    password = os.environ.get(args.sasl_password_env) if args.sasl_password_env else None
    return KafkaConfig(
        bootstrap_servers=bootstrap,
        security_protocol=args.security_protocol or "PLAINTEXT",
        ssl_cafile=args.ssl_cafile,
        ssl_certfile=args.ssl_certfile,
        ssl_keyfile=args.ssl_keyfile,
        sasl_mechanism=args.sasl_mechanism,
        sasl_plain_username=args.sasl_username,
        sasl_plain_password=password,
    )
