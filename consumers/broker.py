"""A local single-node Apache Kafka (KRaft) for development and tests, run from Maven jars.

No Docker needed: Maven fetches `org.apache.kafka:kafka_2.13` and its runtime dependencies
into a cache directory once; the broker then runs as a background JVM on 127.0.0.1.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from config.settings import BrokerSettings

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>jobstream.local</groupId><artifactId>broker-jars</artifactId><version>1</version>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>{version}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId>
      <version>2.24.3</version></dependency>
  </dependencies>
</project>
"""

_LOG4J = """status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = {level}
rootLogger.appenderRef.file.ref = file
"""


class BrokerError(RuntimeError):
    """The local broker cannot be fetched, started or reached; the message says why."""


@dataclass(frozen=True)
class LocalBroker:
    settings: BrokerSettings
    # The port clients are told to connect to (advertised.listeners); default: the broker's own.
    # Tests put a fault-injecting proxy in front of the broker and advertise the proxy's port,
    # so clients keep talking through the proxy after bootstrapping.
    advertised_port: int | None = None

    @property
    def port(self) -> int:
        return self.settings.port

    @property
    def controller_port(self) -> int:
        return self.settings.controller_port or self.settings.port + 1

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def data_dir(self) -> Path:
        return Path(self.settings.data_dir)

    @property
    def jar_dir(self) -> Path:
        return Path(self.settings.cache_dir) / self.settings.version / "libs"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "broker.pid"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "broker.log"

    # -- jars --------------------------------------------------------------------------

    def ensure_jars(self) -> Path:
        if any(self.jar_dir.glob("kafka_2.13-*.jar")):
            return self.jar_dir
        mvn = shutil.which("mvn")
        if mvn is None:
            raise BrokerError(
                "Maven (mvn) is not on PATH; it is needed once to fetch the Kafka jars"
            )
        work = self.jar_dir.parent
        work.mkdir(parents=True, exist_ok=True)
        (work / "pom.xml").write_text(_POM.format(version=self.settings.version))
        tmp = work / "libs.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        cmd = [
            mvn,
            "-q",
            "-B",
            "-f",
            str(work / "pom.xml"),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={tmp}",
            "-DincludeScope=runtime",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        if proc.returncode != 0 or not any(tmp.glob("kafka_2.13-*.jar")):
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
            raise BrokerError(
                f"could not fetch Kafka {self.settings.version} jars with Maven "
                f"(exit {proc.returncode}):\n" + "\n".join(tail)
            )
        tmp.rename(self.jar_dir)  # atomic: a half download never looks complete
        return self.jar_dir

    # -- lifecycle -------------------------------------------------------------------------

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        cmdline = Path(f"/proc/{pid}/cmdline")
        if cmdline.exists() and b"kafka.Kafka" not in cmdline.read_bytes():
            return None  # the pid was reused by another program
        return pid

    def is_up(self, timeout: float = 2.0) -> bool:
        from confluent_kafka.admin import AdminClient

        try:  # a cheap TCP probe first keeps librdkafka from logging refused connections
            socket.create_connection(("127.0.0.1", self.port), timeout=timeout).close()
        except OSError:
            return False
        admin = AdminClient(
            {"bootstrap.servers": self.bootstrap, "socket.timeout.ms": 2000, "log_level": 0}
        )
        try:
            md = admin.list_topics(timeout=timeout)
            return bool(md.brokers)
        except Exception:
            return False

    def start(self, wait_s: float = 90.0) -> str:
        """Start the broker (fetching jars the first time); return the bootstrap address."""
        if self.pid() is not None and self.is_up():
            return self.bootstrap
        java = shutil.which("java")
        if java is None:
            raise BrokerError("Java is not on PATH; the local broker needs Java 17 or newer")
        for port in (self.port, self.controller_port):
            if _port_taken(port):
                raise BrokerError(
                    f"port {port} on 127.0.0.1 is already in use by another process; "
                    "set JOBSTREAM_BROKER__PORT to a free port or stop that process"
                )
        jars = self.ensure_jars()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        props = self._write_config()
        if not (self.data_dir / "logs" / "meta.properties").exists():
            self._java(
                java,
                jars,
                "kafka.tools.StorageTool",
                "format",
                "--standalone",
                "-t",
                uuid.uuid4().hex[:22],
                "-c",
                str(props),
            )
        log4j = self.data_dir / "log4j2.properties"
        log4j.write_text(_LOG4J.format(log=self.log_file, level="INFO"))
        cmd = [
            java,
            f"-Xmx{self.settings.heap}",
            f"-Xms{self.settings.heap}",
            "-XX:+UseG1GC",
            f"-Dlog4j2.configurationFile={log4j}",
            "-cp",
            f"{jars}/*",
            "kafka.Kafka",
            str(props),
        ]
        with open(self.data_dir / "broker.out", "ab") as out:
            proc = subprocess.Popen(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.pid_file.write_text(str(proc.pid))
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise BrokerError(
                    f"broker exited with code {proc.returncode}; see {self.log_file}"
                    f" and {self.data_dir / 'broker.out'}"
                )
            if self.is_up(timeout=1.0):
                return self.bootstrap
            time.sleep(0.5)
        self.stop()
        raise BrokerError(f"broker did not answer within {wait_s:.0f}s; see {self.log_file}")

    def stop(self, wait_s: float = 30.0) -> bool:
        """Stop the broker we recorded; True if one was running."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and self.pid() is not None:
            time.sleep(0.2)
        if self.pid() is not None:
            os.kill(pid, signal.SIGKILL)
            time.sleep(0.5)
        self.pid_file.unlink(missing_ok=True)
        return True

    def _write_config(self) -> Path:
        props = self.data_dir / "server.properties"
        lines = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": f"127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.advertised_port or self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.data_dir / "logs"),
            "num.partitions": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "10",
            "share.coordinator.state.topic.replication.factor": "1",
            "group.initial.rebalance.delay.ms": "0",
            # Consumer-protocol (KIP-848) groups get the classic defaults' short session, so
            # tests of worker.assignment=consumer-protocol see failures as fast.
            "group.consumer.min.session.timeout.ms": "6000",
            "group.consumer.session.timeout.ms": "10000",
            "group.consumer.min.heartbeat.interval.ms": "1000",
            "group.consumer.heartbeat.interval.ms": "2000",
            "auto.create.topics.enable": "false",
            "log.cleaner.backoff.ms": "5000",
        }
        props.write_text("".join(f"{k}={v}\n" for k, v in lines.items()))
        return props

    def _java(self, java: str, jars: Path, main: str, *args: str) -> None:
        proc = subprocess.run(
            [java, "-cp", f"{jars}/*", main, *args], capture_output=True, text=True, timeout=120
        )
        if proc.returncode != 0:
            raise BrokerError(f"{main} {' '.join(args[:1])} failed: {proc.stderr.strip()[-2000:]}")


def _port_taken(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False
