"""A local single-node Apache Kafka (KRaft) for development and tests, run from Maven jars.

No Docker needed: Maven fetches `org.apache.kafka:kafka_2.13` and its runtime dependencies
into a cache directory once; the broker then runs as a background JVM on 127.0.0.1.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from jobstream.config.settings import BrokerSettings

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
        # Per process: brokers started at once on a fresh machine (parallel test runs) each
        # fetch into their own folder, and the first rename wins.
        tag = f"{os.getpid()}.{uuid.uuid4().hex[:8]}"
        pom = work / f"pom.{tag}.xml"
        pom.write_text(_POM.format(version=self.settings.version))
        tmp = work / f"libs.partial.{tag}"
        cmd = [
            mvn,
            "-q",
            "-B",
            "-f",
            str(pom),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={tmp}",
            "-DincludeScope=runtime",
        ]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        finally:
            pom.unlink(missing_ok=True)
        if proc.returncode != 0 or not any(tmp.glob("kafka_2.13-*.jar")):
            shutil.rmtree(tmp, ignore_errors=True)
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
            raise BrokerError(
                f"could not fetch Kafka {self.settings.version} jars with Maven "
                f"(exit {proc.returncode}):\n" + "\n".join(tail)
            )
        try:
            tmp.rename(self.jar_dir)  # atomic: a half download never looks complete
        except OSError:
            if not any(self.jar_dir.glob("kafka_2.13-*.jar")):
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another process got there first
        return self.jar_dir

    # -- lifecycle -------------------------------------------------------------------------

    def pid(self) -> int | None:
        """The live Kafka process the pid file names, if any (not yet checked to be ours)."""
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
        args = _cmdline(pid)
        if args is not None and "kafka.Kafka" not in args:
            return None  # the pid was reused by another program (or is a zombie)
        return pid

    def verified_pid(self) -> int | None:
        """pid() once it is known to be this broker: jobstream started it from this data dir
        and it listens on the configured port. Raises BrokerError naming the process when the
        pid file names another broker, so that a wrong JOBSTREAM_BROKER__* stops nothing."""
        pid = self.pid()
        if pid is None:
            return None
        props = self.data_dir / "server.properties"
        args = _cmdline(pid) or []
        at = args.index("kafka.Kafka") + 1 if "kafka.Kafka" in args else len(args)
        started_with = args[at] if at < len(args) else None
        if started_with is None or os.path.realpath(started_with) != os.path.realpath(props):
            raise BrokerError(
                f"not stopping pid {pid}: the pid file in {self.data_dir} names a Kafka broker "
                f"started from {started_with or 'an unknown config'}, not from {props}"
            )
        # Not listening yet (still starting): the ports this data dir was started with.
        ports = _listening_ports(pid) or _config_ports(props)
        if self.port not in ports:
            listed = ", ".join(str(p) for p in sorted(ports)) or "no port"
            raise BrokerError(
                f"not stopping pid {pid}: the broker in {self.data_dir} listens on {listed}, "
                f"not on the configured port {self.port}; set JOBSTREAM_BROKER__PORT to its "
                "port to stop it"
            )
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
        props = self.format_storage(java, jars)
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
        self._terminate(proc.pid)  # ours for sure, though maybe not listening yet
        self.pid_file.unlink(missing_ok=True)
        raise BrokerError(f"broker did not answer within {wait_s:.0f}s; see {self.log_file}")

    def stop(self, wait_s: float = 30.0) -> int | None:
        """Stop this data dir's broker after verified_pid()'s checks; its pid, or None when
        none was running."""
        pid = self.verified_pid()
        if pid is not None:
            self._terminate(pid, wait_s)
        self.pid_file.unlink(missing_ok=True)
        return pid

    def _terminate(self, pid: int, wait_s: float = 30.0) -> None:
        try:
            os.kill(pid, signal.SIGTERM)
        except PermissionError:
            raise BrokerError(f"not allowed to stop pid {pid} (another user's process)") from None
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and self.pid() is not None:
            time.sleep(0.2)
        if self.pid() is not None:
            os.kill(pid, signal.SIGKILL)
            time.sleep(0.5)

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

    def format_storage(self, java: str, jars: Path, *extra: str) -> Path:
        """Write the broker's config and, on first use of the data dir, format the KRaft
        storage (`extra`: more StorageTool arguments, e.g. a SCRAM user). Returns the config."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        props = self._write_config()
        if not (self.data_dir / "logs" / "meta.properties").exists():
            self._java(java, jars, "kafka.tools.StorageTool", "format", "--standalone",
                       "-t", uuid.uuid4().hex[:22], "-c", str(props), *extra)
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


def _cmdline(pid: int) -> list[str] | None:
    """A process's arguments; None when they cannot be read."""
    if os.path.isdir("/proc/self"):
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None
        return [a.decode(errors="replace") for a in raw.split(b"\0") if a]
    try:  # no /proc (macOS): ps splits arguments at spaces, enough for the checks here
        ps = subprocess.run(
            ["ps", "-ww", "-o", "args=", "-p", str(pid)], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return ps.stdout.split() if ps.returncode == 0 else None


def _listening_ports(pid: int) -> set[int]:
    """TCP ports the process listens on (Linux: its socket inodes in /proc/net/tcp*); empty
    when that cannot be read."""
    inodes = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return set()
    for fd in fds:
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            f = row.split()
            if len(f) > 9 and f[3] == "0A" and f[9] in inodes:  # 0A: LISTEN
                ports.add(int(f[1].rsplit(":", 1)[1], 16))
    return ports


def _config_ports(props: Path) -> set[int]:
    """The ports in a server.properties' `listeners` line."""
    try:
        text = props.read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("listeners="):
            return {int(p) for p in re.findall(r":(\d+)(?:,|$)", line)}
    return set()
