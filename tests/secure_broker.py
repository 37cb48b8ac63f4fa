"""A throwaway single-node Kafka (KRaft) with secured listeners, for the secure-connection tests.

It reuses `LocalBroker` (same cached jars, same launch and readiness probe) with its own data
dir and free loopback ports, so it never touches the shared development broker on 9092/9093.

Listeners:
  CONTROLLER  PLAINTEXT  KRaft controller
  INTERNAL    PLAINTEXT  inter-broker traffic and the readiness probe of LocalBroker.is_up
  SECURE      SASL_SSL   SCRAM-SHA-512 over TLS (server certificate only)
  MTLS        SSL        mutual TLS: ssl.client.auth=required

The certificates come from a throwaway CA made with `cryptography`: the broker's has SANs
127.0.0.1 and localhost (clients verify the host name), the client's key is encrypted with a
password (so `kafka.ssl_key_password` is exercised too).
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import shutil
import signal
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from jobstream.config.settings import BrokerSettings
from jobstream.consumers.broker import BrokerError, LocalBroker

SCRAM_USER = "jobstream-test"


@dataclass(frozen=True)
class Pki:
    ca: Path  # CA certificate (PEM): the truststore of broker and clients
    broker_keystore: Path  # broker key + certificate chain in one PEM file
    client_cert: Path
    client_key: Path  # encrypted PKCS#8 PEM
    client_key_password: str
    other_ca: Path  # a CA nobody signed with: a client trusting only it must refuse the broker


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _make_ca(cn: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _make_leaf(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    cn: str,
    *,
    server: bool,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(IPv4Address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
    return key, builder.sign(ca_key, hashes.SHA256())


def make_pki(directory: Path) -> Pki:
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = _make_ca("jobstream-test-ca")
    _, other_cert = _make_ca("jobstream-unrelated-ca")
    broker_key, broker_cert = _make_leaf(ca_key, ca_cert, "localhost", server=True)
    client_key, client_cert = _make_leaf(ca_key, ca_cert, "jobstream-client", server=False)
    key_password = secrets.token_urlsafe(12)

    ca = directory / "ca.pem"
    ca.write_bytes(_pem_cert(ca_cert))
    other_ca = directory / "other-ca.pem"
    other_ca.write_bytes(_pem_cert(other_cert))
    # Kafka's PEM keystore: an unencrypted PKCS#8 key followed by the certificate chain.
    keystore = directory / "broker-keystore.pem"
    keystore.write_bytes(
        broker_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        + _pem_cert(broker_cert)
        + _pem_cert(ca_cert)
    )
    client_cert_path = directory / "client.pem"
    client_cert_path.write_bytes(_pem_cert(client_cert))
    client_key_path = directory / "client.key"
    client_key_path.write_bytes(
        client_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(key_password.encode()),
        )
    )
    for p in (keystore, client_key_path):
        p.chmod(0o600)
    return Pki(ca, keystore, client_cert_path, client_key_path, key_password, other_ca)


def free_ports(n: int) -> list[int]:
    """n distinct free loopback ports (held open together so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        ports = [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()
    assert not {9092, 9093} & set(ports), ports
    return ports


@dataclass(frozen=True)
class SecureBroker(LocalBroker):
    """LocalBroker (its `port` is the INTERNAL plaintext listener) plus two secured ones."""

    sasl_port: int = 0
    mtls_port: int = 0
    pki_dir: Path = Path()
    scram_password: str = ""

    @property
    def sasl_bootstrap(self) -> str:
        return f"127.0.0.1:{self.sasl_port}"

    @property
    def mtls_bootstrap(self) -> str:
        return f"127.0.0.1:{self.mtls_port}"

    def _write_config(self) -> Path:
        props = super()._write_config()
        pki = self.pki_dir
        lines = dict(
            line.split("=", 1) for line in props.read_text().splitlines() if "=" in line
        )
        lines.update(
            {
                "listeners": ",".join(
                    [
                        f"INTERNAL://127.0.0.1:{self.port}",
                        f"CONTROLLER://127.0.0.1:{self.controller_port}",
                        f"SECURE://127.0.0.1:{self.sasl_port}",
                        f"MTLS://127.0.0.1:{self.mtls_port}",
                    ]
                ),
                "advertised.listeners": ",".join(
                    [
                        f"INTERNAL://127.0.0.1:{self.port}",
                        f"SECURE://127.0.0.1:{self.sasl_port}",
                        f"MTLS://127.0.0.1:{self.mtls_port}",
                    ]
                ),
                "listener.security.protocol.map": (
                    "INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT,SECURE:SASL_SSL,MTLS:SSL"
                ),
                "inter.broker.listener.name": "INTERNAL",
                "sasl.enabled.mechanisms": "SCRAM-SHA-512",
                "listener.name.secure.sasl.enabled.mechanisms": "SCRAM-SHA-512",
                "listener.name.secure.scram-sha-512.sasl.jaas.config": (
                    "org.apache.kafka.common.security.scram.ScramLoginModule required;"
                ),
                "listener.name.mtls.ssl.client.auth": "required",
                "ssl.keystore.type": "PEM",
                "ssl.keystore.location": str(pki / "broker-keystore.pem"),
                "ssl.truststore.type": "PEM",
                "ssl.truststore.location": str(pki / "ca.pem"),
            }
        )
        props.write_text("".join(f"{k}={v}\n" for k, v in lines.items()))
        return props

    def format_with_scram(self, java: str) -> None:
        """Format the KRaft storage with the SCRAM user in the bootstrap metadata, so the
        credential exists before any client connects (no admin round trip needed)."""
        self.format_storage(
            java,
            self.ensure_jars(),
            "--add-scram",
            f"SCRAM-SHA-512=[name={SCRAM_USER},password={self.scram_password}]",
        )

    def kill(self, wait_s: float = 10.0) -> None:
        """SIGKILL the JVM: the broker and its data are throwaway, no clean shutdown needed."""
        pid = self.pid()
        if pid is not None:
            with suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)  # started with start_new_session: pid == pgid
            deadline = time.monotonic() + wait_s
            while self.pid() is not None and time.monotonic() < deadline:
                time.sleep(0.1)
        if self.pid() is not None:
            raise BrokerError(f"secure test broker (pid {pid}) did not die")
        self.pid_file.unlink(missing_ok=True)


@contextmanager
def secure_broker(root: Path) -> Iterator[tuple[SecureBroker, Pki]]:
    """Start the secured broker under `root`; it is always killed on exit."""
    java = shutil.which("java")
    if java is None:
        raise BrokerError("Java is not on PATH; the secure test broker needs Java 17 or newer")
    pki = make_pki(root / "pki")
    internal, controller, sasl, mtls = free_ports(4)
    broker = SecureBroker(
        BrokerSettings(
            port=internal,
            controller_port=controller,
            data_dir=root / "broker",
            heap="384m",
        ),
        sasl_port=sasl,
        mtls_port=mtls,
        pki_dir=pki.ca.parent,
        scram_password=secrets.token_urlsafe(18),
    )
    with ExitStack() as stack:
        stack.callback(broker.kill)
        broker.format_with_scram(java)
        broker.start(wait_s=90)
        yield broker, pki
