"""A real single-node Apache Kafka broker (KRaft) on loopback, for development and tests.

The broker's jars come from Maven Central through ``deploy/kafka/pom.xml``; no Kafka
distribution or Docker is needed, only a JDK 17+ and Maven.

Example::

    with LocalKafka() as kafka:
        producer = KafkaProducer(bootstrap_servers=kafka.bootstrap)

From a shell: ``python -m streams.local_kafka up`` starts a detached broker and prints
``KAFKA_BOOTSTRAP=127.0.0.1:<port>``; ``down`` stops it.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import hashlib
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from streams.exceptions import BrokerError

REPO_ROOT = Path(__file__).resolve().parents[1]
KAFKA_DIR = REPO_ROOT / "deploy" / "kafka"
MAIN_CLASS = "kafka.Kafka"
STORAGE_TOOL = "kafka.tools.StorageTool"
_LOG_TAIL_LINES = 30
_STACK_FRAME = re.compile(r"\s+(at |\.\.\. \d+ more)")


@dataclass(frozen=True)
class LocalKafkaConfig:
    """How to obtain, start and stop the local broker."""

    libs_dir: Path = KAFKA_DIR / "libs"
    pom_dir: Path = KAFKA_DIR
    log4j_config: Path = KAFKA_DIR / "log4j2.xml"
    state_file: Path = REPO_ROOT / ".kafka" / "state.json"
    work_root: Path | None = None
    """Parent of the broker's temp data dir; ``None`` means the system temp dir."""
    java: str = "java"
    mvn: str = "mvn"
    host: str = "127.0.0.1"
    heap: str = "512m"
    jvm_options: tuple[str, ...] = ("-XX:+UseG1GC", "-Djava.awt.headless=true")
    startup_timeout_s: float = 60.0
    stop_timeout_s: float = 15.0
    default_partitions: int = 1
    broker_properties: Mapping[str, str] = field(default_factory=dict, hash=False)
    """Extra ``server.properties`` entries; they override the defaults."""

    def __post_init__(self) -> None:
        frozen = MappingProxyType({str(k): str(v) for k, v in self.broker_properties.items()})
        object.__setattr__(self, "broker_properties", frozen)


# --------------------------------------------------------------------------------------- jars


def _require(executable: str, install_hint: str) -> str:
    path = shutil.which(executable)
    if path is None:
        raise BrokerError(f"{executable} not found: install {install_hint}")
    return path


def _require_java(config: LocalKafkaConfig) -> str:
    return _require(config.java, "OpenJDK 17 (apt-get install openjdk-17-jre-headless)")


def ensure_jars(config: LocalKafkaConfig | None = None) -> Path:
    """Copy the broker's runtime jars from Maven Central into ``config.libs_dir`` once.

    ``libs/.complete`` records the digest of the POM the jars came from; a changed POM
    (e.g. a Kafka version bump) replaces them. Concurrent callers wait for one download.
    """
    config = config or LocalKafkaConfig()
    pom = config.pom_dir / "pom.xml"
    with pom.open("rb") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _copy_jars(config, pom, hashlib.sha256(lock.read()).hexdigest())


def _copy_jars(config: LocalKafkaConfig, pom: Path, digest: str) -> Path:
    libs, marker = config.libs_dir, config.libs_dir / ".complete"
    if marker.is_file() and marker.read_text().strip() == digest:
        return libs
    mvn = _require(config.mvn, "Maven 3.8+ (apt-get install maven)")
    if libs.exists():
        shutil.rmtree(libs)
    cmd = [mvn, "-B", "-q", "-Dstyle.color=never", "-f", str(pom), "dependency:copy-dependencies"]
    cmd += ["-DincludeScope=runtime", f"-Dkafka.libs.dir={libs}"]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = _tail((result.stdout + result.stderr).splitlines())
        raise BrokerError(f"mvn could not fetch the Kafka jars (exit {result.returncode}):\n{tail}")
    if not any(libs.glob("kafka_2.13-*.jar")):
        raise BrokerError(f"mvn finished but {libs} holds no kafka_2.13 jar")
    marker.write_text(digest + "\n")
    return libs


# ----------------------------------------------------------------------------- configuration


def random_cluster_id() -> str:
    """A cluster id as Kafka's ``Uuid.randomUuid()`` prints it: 22 base64url characters."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):  # Kafka avoids these too: they read as CLI flags
            return text


def server_properties(
    config: LocalKafkaConfig, data_dir: Path, broker_port: int, controller_port: int
) -> dict[str, str]:
    """The ``server.properties`` of a combined broker+controller node tuned for fast tests."""
    host = config.host
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.bootstrap.servers": f"{host}:{controller_port}",
        "listeners": f"PLAINTEXT://{host}:{broker_port},CONTROLLER://{host}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{host}:{broker_port}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(data_dir / "logs"),
        "num.partitions": str(config.default_partitions),
        "auto.create.topics.enable": "true",
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "4",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "4",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "group.min.session.timeout.ms": "1000",
        "log.cleaner.dedupe.buffer.size": str(16 * 1024 * 1024),
    }
    props.update(config.broker_properties)
    return props


def render_properties(props: Mapping[str, str]) -> str:
    return "".join(f"{key}={value}\n" for key, value in props.items())


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _free_ports(host: str, count: int) -> list[int]:
    """Free ports below the ephemeral range.

    A listener port inside the ephemeral range can be taken, while the broker restarts, as the
    source port of a client reconnecting to it (TCP self-connect); below the range it cannot.
    """
    low = _ephemeral_low()
    pool = range(max(1024, min(20000, low - 2000)), low)
    candidates = random.sample(pool, min(200, len(pool)))
    ports: list[int] = []
    for port in candidates:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
        ports.append(port)
        if len(ports) == count:
            return ports
    raise BrokerError(f"no {count} free ports on {host} below {low}")


def _tail(lines: Sequence[str], count: int = _LOG_TAIL_LINES) -> str:
    """The last ``count`` lines, Java stack frames left out so the causes fit."""
    kept = [line for line in lines if not _STACK_FRAME.match(line)]
    return "\n".join(kept[-count:])


def _log_tail(path: Path) -> str:
    try:
        return _tail(path.read_text(errors="replace").splitlines())
    except OSError:
        return "(no log)"


# ------------------------------------------------------------------------------------ broker


class LocalKafka:
    """One broker+controller JVM on two loopback ports with its data in a temp dir.

    ``restart()`` keeps the ports and the data, so clients reconnect and records survive.
    """

    def __init__(self, config: LocalKafkaConfig | None = None) -> None:
        self._config = config or LocalKafkaConfig()
        self._proc: subprocess.Popen[bytes] | None = None
        self._data_dir: Path | None = None
        self._ports: tuple[int, int] | None = None

    def __repr__(self) -> str:
        where = self.bootstrap if self._ports else "not started"
        return f"LocalKafka({where}, running={self.running})"

    @property
    def config(self) -> LocalKafkaConfig:
        return self._config

    @property
    def bootstrap(self) -> str:
        """``host:port`` of the PLAINTEXT listener."""
        if self._ports is None:
            raise BrokerError("the local Kafka broker has not been started")
        return f"{self._config.host}:{self._ports[0]}"

    @property
    def data_dir(self) -> Path | None:
        return self._data_dir

    @property
    def log_path(self) -> Path | None:
        return self._data_dir / "kafka.log" if self._data_dir else None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> LocalKafka:
        """Format fresh storage, launch the JVM and wait until it serves metadata."""
        if self._proc is not None:
            raise BrokerError(f"the local Kafka broker is already started at {self.bootstrap}")
        java = _require_java(self._config)
        libs = ensure_jars(self._config)
        root = self._config.work_root
        if root is not None:
            root.mkdir(parents=True, exist_ok=True)
        self._data_dir = Path(tempfile.mkdtemp(prefix="harstream-kafka-", dir=root))
        try:
            broker_port, controller_port = _free_ports(self._config.host, 2)
            self._ports = (broker_port, controller_port)
            props = server_properties(self._config, self._data_dir, *self._ports)
            (self._data_dir / "server.properties").write_text(render_properties(props))
            self._format(java, libs)
            self._launch(java, libs)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the JVM (SIGTERM, then SIGKILL after the stop timeout) and delete its data."""
        self._terminate()
        if self._data_dir is not None:
            shutil.rmtree(self._data_dir, ignore_errors=True)
        self._data_dir = None
        self._ports = None

    def restart(self) -> None:
        """Stop the JVM and start it again on the same ports and data."""
        self.halt()
        self.resume()

    def halt(self) -> None:
        """Stop the JVM but keep its ports and data, for :meth:`resume` (an outage)."""
        if self._data_dir is None:
            raise BrokerError("the local Kafka broker has not been started")
        self._terminate()

    def resume(self) -> None:
        """Start the JVM a :meth:`halt` stopped, on the same ports and data."""
        if self._data_dir is None:
            raise BrokerError("the local Kafka broker has not been started")
        if self.running:
            raise BrokerError(f"the local Kafka broker is already running at {self.bootstrap}")
        self._launch(_require_java(self._config), self._config.libs_dir)

    def state(self) -> dict[str, Any]:
        """What ``.kafka/state.json`` records about a detached broker."""
        return {
            "pid": self.pid,
            "bootstrap": self.bootstrap,
            "data_dir": str(self._data_dir),
            "log": str(self.log_path),
        }

    def __enter__(self) -> LocalKafka:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _format(self, java: str, libs: Path) -> None:
        assert self._data_dir is not None
        cmd = [java, f"-Dlog4j2.configurationFile={self._config.log4j_config}"]
        cmd += ["-cp", str(libs / "*"), STORAGE_TOOL, "format", "--standalone"]
        cmd += ["--cluster-id", random_cluster_id()]
        cmd += ["--config", str(self._data_dir / "server.properties")]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            tail = _tail((result.stdout + result.stderr).splitlines())
            raise BrokerError(f"kafka-storage format failed (exit {result.returncode}):\n{tail}")

    def _launch(self, java: str, libs: Path) -> None:
        assert self._data_dir is not None and self.log_path is not None
        cmd = [
            java,
            f"-Xmx{self._config.heap}",
            *self._config.jvm_options,
            f"-Dlog4j2.configurationFile={self._config.log4j_config}",
            "-cp",
            str(libs / "*"),
            MAIN_CLASS,
            str(self._data_dir / "server.properties"),
        ]
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self._data_dir,
                start_new_session=True,
            )
        self._wait_ready()

    def _wait_ready(self) -> None:
        assert self._proc is not None and self.log_path is not None
        deadline = time.monotonic() + self._config.startup_timeout_s
        while time.monotonic() < deadline:
            code = self._proc.poll()
            if code is not None:
                raise BrokerError(
                    f"Kafka exited with code {code} during startup; last lines of its log:\n"
                    f"{_log_tail(self.log_path)}"
                )
            if _serves_metadata(self.bootstrap):
                return
            time.sleep(0.2)
        raise BrokerError(
            f"Kafka did not serve metadata on {self.bootstrap} within "
            f"{self._config.startup_timeout_s:g}s; last lines of its log:\n"
            f"{_log_tail(self.log_path)}"
        )

    def _terminate(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(self._config.stop_timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _serves_metadata(bootstrap: str) -> bool:
    """True once the broker answers a metadata request listing at least one broker."""
    host, port = bootstrap.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError:
        return False
    admin = None
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap,
            client_id="harstream-local-kafka",
            request_timeout_ms=5000,
        )
        return bool(admin.describe_cluster().get("brokers"))
    except (KafkaError, OSError):
        return False
    finally:
        if admin is not None:
            admin.close()


# ------------------------------------------------------------------------ detached broker CLI


def _pid_is_broker(pid: int, data_dir: str) -> bool:
    """The pid is alive (not a zombie) and still the broker started for ``data_dir``."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        status = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    args = [part.decode(errors="replace") for part in cmdline]
    return status != "Z" and MAIN_CLASS in args and any(a.startswith(data_dir) for a in args)


def _read_state(config: LocalKafkaConfig) -> dict[str, Any] | None:
    try:
        state = json.loads(config.state_file.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(state, dict) or not {"pid", "data_dir", "bootstrap"} <= state.keys():
        return None
    return state


def _running_state(config: LocalKafkaConfig) -> dict[str, Any] | None:
    state = _read_state(config)
    if state and _pid_is_broker(int(state["pid"]), state["data_dir"]):
        return state
    return None


def _stop_pid(pid: int, data_dir: str, timeout_s: float) -> None:
    for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 5.0)):
        if not _pid_is_broker(pid, data_dir):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and _pid_is_broker(pid, data_dir):
            time.sleep(0.1)
    if _pid_is_broker(pid, data_dir):
        raise BrokerError(f"Kafka (pid {pid}) did not stop after SIGKILL")


def _cmd_jars(config: LocalKafkaConfig) -> int:
    started = time.monotonic()
    libs = ensure_jars(config)
    jars = sorted(libs.glob("*.jar"))
    print(f"{len(jars)} jars in {libs} ({time.monotonic() - started:.1f}s)")
    return 0


def _cmd_up(config: LocalKafkaConfig) -> int:
    state = _running_state(config)
    if state:
        print(f"Kafka already running (pid {state['pid']})", file=sys.stderr)
        print(f"KAFKA_BOOTSTRAP={state['bootstrap']}")
        return 0
    stale = _read_state(config)
    if stale:  # the broker died or the machine rebooted: drop what it left behind
        shutil.rmtree(stale["data_dir"], ignore_errors=True)
    started = time.monotonic()
    broker = LocalKafka(config).start()
    config.state_file.parent.mkdir(parents=True, exist_ok=True)
    config.state_file.write_text(json.dumps(broker.state(), indent=2) + "\n")
    print(
        f"Kafka started (pid {broker.pid}, {time.monotonic() - started:.1f}s, "
        f"log {broker.log_path})",
        file=sys.stderr,
    )
    print(f"KAFKA_BOOTSTRAP={broker.bootstrap}")
    return 0


def _cmd_down(config: LocalKafkaConfig) -> int:
    state = _read_state(config)
    if state is None:
        print("no local Kafka broker is recorded; nothing to stop")
        return 0
    _stop_pid(int(state["pid"]), state["data_dir"], config.stop_timeout_s)
    shutil.rmtree(state["data_dir"], ignore_errors=True)
    config.state_file.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        config.state_file.parent.rmdir()
    print(f"Kafka stopped (pid {state['pid']})")
    return 0


def _cmd_status(config: LocalKafkaConfig) -> int:
    state = _running_state(config)
    if state is None:
        stale = " (stale state file: run `down` to clean up)" if _read_state(config) else ""
        print(f"not running{stale}")
        return 1
    print(f"KAFKA_BOOTSTRAP={state['bootstrap']}")
    return 0


_COMMANDS = {"jars": _cmd_jars, "up": _cmd_up, "down": _cmd_down, "status": _cmd_status}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m streams.local_kafka",
        description="Run a local single-node Apache Kafka broker (KRaft) from Maven Central jars.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("jars", help="download the broker jars into deploy/kafka/libs (once)")
    sub.add_parser(
        "up", help="start a detached broker and print KAFKA_BOOTSTRAP=host:port (idempotent)"
    )
    sub.add_parser("down", help="stop the detached broker and delete its data")
    sub.add_parser("status", help="print KAFKA_BOOTSTRAP if running (exit 0), else exit 1")
    args = parser.parse_args(argv)
    try:
        return _COMMANDS[args.command](LocalKafkaConfig())
    except BrokerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
