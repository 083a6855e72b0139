"""HTTPS and mutual TLS: with `client_ca`, clients need a certificate from that CA."""

from __future__ import annotations

import datetime as dt
import ssl
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from gateway_helpers import INFER, infer_body

from bastion.core.errors import UsageError
from bastion.gateway.config import ServerConfig
from bastion.gateway.server import tls_options


def _cert(
    name: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    ca: bool,
) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    issuer_name, issuer_key = issuer if issuer else (subject, key)
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _write(
    directory: Path,
    name: str,
    cert: x509.Certificate,
    key: ec.EllipticCurvePrivateKey | None = None,
) -> None:
    (directory / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        (directory / f"{name}.key").write_bytes(pem)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, a server certificate for 127.0.0.1, a client certificate, and a stranger's."""
    d = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("test CA", ca_key, None, ca=True)
    _write(d, "ca", ca)
    for name in ("server", "client"):
        key = ec.generate_private_key(ec.SECP256R1())
        _write(d, name, _cert(name, key, (ca.subject, ca_key), ca=False), key)
    rogue_key = ec.generate_private_key(ec.SECP256R1())
    _write(d, "rogue", _cert("rogue", rogue_key, None, ca=False), rogue_key)
    return d


def test_mutual_tls(serve, pki: Path) -> None:  # type: ignore[no-untyped-def]
    gw = serve(
        server={
            "tls_cert": str(pki / "server.pem"),
            "tls_key": str(pki / "server.key"),
            "client_ca": str(pki / "ca.pem"),
        }
    )
    assert gw.url.startswith("https://")
    key = gw.key()

    def client(cert: str | None) -> httpx.Client:
        context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
        if cert:
            context.load_cert_chain(str(pki / f"{cert}.pem"), str(pki / f"{cert}.key"))
        return httpx.Client(
            base_url=gw.url, verify=context, headers={"Authorization": f"Bearer {key}"}
        )

    with client("client") as good:
        assert good.post(INFER, json=infer_body()).status_code == 200
    for cert in (None, "rogue"):
        with client(cert) as bad, pytest.raises(httpx.HTTPError):
            bad.post(INFER, json=infer_body())
    with (
        httpx.Client(base_url=gw.url.replace("https", "http")) as plain,
        pytest.raises(httpx.HTTPError),
    ):
        plain.get("/v2/health/live")


def test_tls_options_refuse_half_configurations(pki: Path) -> None:
    with pytest.raises(UsageError):
        tls_options(ServerConfig(tls_cert=pki / "server.pem"))
    with pytest.raises(UsageError):
        tls_options(ServerConfig(client_ca=pki / "ca.pem"))
    assert tls_options(ServerConfig()) == {}
