"""Apache Kafka as a secured production cluster runs: TLS, SASL/SCRAM-SHA-512 and ACLs (issue #15).

    with secure_kafka(tmp_dir) as cluster:          # the `secure_kafka` fixture: one per session
        cluster.grant(documented_acls(tmp_dir, PREFIX=prefix, ROUTER_GROUP=group))  # deploy/kafka-acls.sh
        cfg = build_config({"kafka": cluster.kafka_table("smartroute-router", prefix)},
                           cluster.environ("smartroute-router"))

The test makes its own CA and a broker certificate for 127.0.0.1 and localhost; clients trust
the CA's PEM file, the broker reads its key and chain from one PEM file (deploy/INSTALL.md step
8). The SASL_SSL listener accepts SCRAM-SHA-512 for the users below, created when the storage
is formatted, and PLAIN for the canary user only. The StandardAuthorizer allows nothing an ACL
does not; `admin` is the super user that grants ACLs. The broker's PLAINTEXT listener is the
launcher's (readiness probe, controller): no client under test uses it.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import shlex
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from daemon.apache_kafka import ApacheKafka
from daemon.config.kafka import SASL_PASSWORD_ENV

REPO: Final = Path(__file__).resolve().parents[2]
ACL_SCRIPT: Final = REPO / "deploy" / "kafka-acls.sh"
LISTENER: Final = "SASL_SSL"
ADMIN: Final = "admin"
# Every principal of deploy/kafka-acls.sh, plus an outsider who is granted only what a test says.
PASSWORDS: Final = {
    ADMIN: "admin-secret-4f1c",
    "smartroute-admin": "topics-secret-9a2e",
    "smartroute-feeds": "feeds-secret-1b7d",
    "smartroute-detector": "detector-secret-6c3a",
    "smartroute-router": "router-secret-2e8f",
    "desk-1": "desk-secret-7d4b",
    "ops": "ops-secret-3f9c",
    "intruder": "intruder-secret-5a1e",
}
CANARY_USER: Final = "canary"
CANARY_PASSWORD: Final = "CanarySasl9e3f7b1c5d2a8f4e0c6b9d3a7f1e5c2b8d4a0e6f9c3b7d1a5e2f8c4b0d6"


@dataclass(frozen=True)
class Tls:
    """The test CA's certificate (for clients) and the broker's key and certificate chain (one PEM file)."""

    ca_file: Path
    broker_keystore_file: Path


def make_tls(directory: Path) -> Tls:
    """Write a CA and a broker certificate for 127.0.0.1 and localhost, signed by it, into `directory`."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "smartroute test CA")])
    ca = (
        _certificate(ca_name, ca_name, ca_key.public_key(), now)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(cert_sign=True), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    broker_key = ec.generate_private_key(ec.SECP256R1())
    broker_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.IPv4Address("127.0.0.1"))]
    broker = (
        _certificate(broker_name, ca_name, broker_key.public_key(), now)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(cert_sign=False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    tls = Tls(directory / "ca.pem", directory / "broker.pem")
    tls.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    key = broker_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    chain = broker.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(serialization.Encoding.PEM)
    tls.broker_keystore_file.write_bytes(key + chain)
    return tls


def _certificate(
    subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePublicKey, now: datetime.datetime
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
    )


def _usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=not cert_sign,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def broker_properties(tls: Tls) -> dict[str, str]:
    """Return the server properties of deploy/INSTALL.md step 8, and PLAIN for the canary user only."""
    scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
    plain = "org.apache.kafka.common.security.plain.PlainLoginModule required"
    listener = f"listener.name.{LISTENER.lower()}."
    return {
        "sasl.enabled.mechanisms": "SCRAM-SHA-512,PLAIN",
        listener + "scram-sha-512.sasl.jaas.config": scram,
        # PLAIN sends the password itself (inside TLS): only the canary may use it, to prove it never shows.
        listener + "plain.sasl.jaas.config": f'{plain} user_{CANARY_USER}="{CANARY_PASSWORD}";',
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(tls.broker_keystore_file),
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "allow.everyone.if.no.acl.found": "false",
        # The launcher's PLAINTEXT listener and the controller's are anonymous: the broker itself.
        "super.users": f"User:{ADMIN};User:ANONYMOUS",
    }


@dataclass
class SecureKafka:
    """A running secured broker: where its SASL_SSL listener is and how each principal logs in."""

    broker: ApacheKafka
    tls: Tls

    @property
    def servers(self) -> str:
        """Return the SASL_SSL listener's `host:port`."""
        return self.broker.listener_servers(LISTENER)

    def kafka_table(self, user: str, prefix: str) -> dict[str, object]:
        """Return a `[kafka]` table that logs in as `user` over SASL_SSL (the password: `environ`)."""
        return {
            "bootstrap_servers": self.servers,
            "topic_prefix": prefix,
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_username": user,
            "ssl_cafile": str(self.tls.ca_file),
            "request_timeout_ms": 10_000,
        }

    def kafka_toml(self, user: str, prefix: str) -> str:
        """Return the `[kafka]` section of a config file that logs in as `user`."""
        lines = [f"{key} = {json.dumps(value)}" for key, value in self.kafka_table(user, prefix).items()]
        return "[kafka]\n" + "\n".join(lines) + "\n"

    @staticmethod
    def environ(user: str, password: str | None = None) -> dict[str, str]:
        """Return the environment that gives `user`'s SASL password (or `password`) to smartroute."""
        return {SASL_PASSWORD_ENV: PASSWORDS.get(user, CANARY_PASSWORD) if password is None else password}

    def admin(self) -> AdminClient:
        """Return a confluent-kafka admin client logged in as the super user."""
        return AdminClient(
            {
                "bootstrap.servers": self.servers,
                "security.protocol": "SASL_SSL",
                "sasl.mechanisms": "SCRAM-SHA-512",
                "sasl.username": ADMIN,
                "sasl.password": PASSWORDS[ADMIN],
                "ssl.ca.location": str(self.tls.ca_file),
            }
        )

    def grant(self, acls: Sequence[AclBinding]) -> None:
        """Create `acls` as the super user; return once the controller accepted every one."""
        admin = self.admin()  # held until every future is done: a collected client cancels them
        for future in admin.create_acls(list(acls), request_timeout=30).values():
            future.result(timeout=30)


@contextmanager
def secure_kafka(directory: Path) -> Iterator[SecureKafka]:
    """Run one Apache Kafka broker with a SASL_SSL listener, SCRAM users and the StandardAuthorizer."""
    tls = make_tls(directory / "tls")
    broker = ApacheKafka(
        log_dir=directory,
        stop_grace_s=5.0,
        properties=broker_properties(tls),
        listeners={LISTENER: "SASL_SSL"},
        scram_users=PASSWORDS | {CANARY_USER: CANARY_PASSWORD},
    )
    with broker:
        yield SecureKafka(broker, tls)


def documented_acls(record_dir: Path, **environ: str) -> list[AclBinding]:
    """Run deploy/kafka-acls.sh with `environ` (PREFIX, ROUTER=..., ...) and return the ACLs it adds.

    `kafka-acls.sh` is replaced by a recorder of its arguments, which are then read as
    kafka-acls.sh reads them: what the script would grant is what the test grants.
    """
    record = record_dir / "kafka-acls.jsonl"
    record.unlink(missing_ok=True)
    recorder = record_dir / "kafka-acls-recorder"
    recorder.write_text(
        f"#!{sys.executable}\nimport json, sys\n"
        f"with open({str(record)!r}, 'a') as out:\n    out.write(json.dumps(sys.argv[1:]) + '\\n')\n"
    )
    recorder.chmod(0o755)
    settings = {"BOOTSTRAP": "broker:9093", "ADMIN_CONFIG": "admin.properties", "KAFKA_ACLS": str(recorder)}
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")} | settings | environ
    subprocess.run(["sh", str(ACL_SCRIPT)], env=env, check=True, timeout=30)
    return [acl for line in record.read_text().splitlines() for acl in parse_kafka_acls(json.loads(line))]


def parse_kafka_acls(argv: Sequence[str]) -> list[AclBinding]:
    """Return the ALLOW bindings that `kafka-acls.sh --add <argv>` creates; ValueError on anything else."""
    options: dict[str, list[str]] = {}
    words = list(argv)
    while words:
        flag = words.pop(0)
        if flag in ("--add", "--cluster"):
            options.setdefault(flag, []).append("kafka-cluster")
        elif flag in _ARGUMENT_FLAGS and words:
            options.setdefault(flag, []).append(words.pop(0))
        else:
            raise ValueError(f"kafka-acls.sh argument not understood: {shlex.join(argv)}")
    if "--add" not in options or not options.get("--allow-principal") or not options.get("--operation"):
        raise ValueError(f"not an --add of an ALLOW ACL: {shlex.join(argv)}")
    pattern = ResourcePatternType[options.get("--resource-pattern-type", ["literal"])[-1].upper()]
    resources = [
        (kind, name)
        for flag, kind in _RESOURCE_FLAGS.items()
        for name in options.get(flag, [])
    ]  # fmt: skip
    hosts = options.get("--allow-host", ["*"])
    return [
        AclBinding(kind, name, pattern, principal, host, _operation(operation), AclPermissionType.ALLOW)
        for kind, name in resources
        for principal in options["--allow-principal"]
        for host in hosts
        for operation in options["--operation"]
    ]


_ARGUMENT_FLAGS: Final = frozenset(
    {
        "--bootstrap-server", "--command-config", "--allow-principal", "--allow-host", "--operation",
        "--topic", "--group", "--transactional-id", "--resource-pattern-type",
    }
)  # fmt: skip
_RESOURCE_FLAGS: Final[Mapping[str, ResourceType]] = {
    "--topic": ResourceType.TOPIC,
    "--group": ResourceType.GROUP,
    "--cluster": ResourceType.BROKER,
    "--transactional-id": ResourceType.TRANSACTIONAL_ID,
}


def _operation(name: str) -> AclOperation:
    """Return kafka-acls.sh's operation name (`DescribeConfigs`) as an AclOperation (DESCRIBE_CONFIGS)."""
    snake = "".join(f"_{c}" if c.isupper() and i else c for i, c in enumerate(name)).upper()
    return AclOperation[snake]
