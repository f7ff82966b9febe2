"""Certificates for tests, made with `cryptography`: a CA, intermediates and server certificates with chosen
names, validity and keys, written as PEM."""

import datetime
import ipaddress
import pathlib

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def new_key(kind: str = "ec", bits: int = 2048):
    return ec.generate_private_key(ec.SECP256R1()) if kind == "ec" else rsa.generate_private_key(65537, bits)


def key_pem(key, passphrase: bytes | None = None) -> str:
    encryption = (serialization.BestAvailableEncryption(passphrase) if passphrase
                  else serialization.NoEncryption())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption).decode()


def certificate_pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


class CertificateAuthority:
    """A CA (self-signed, or an intermediate under `parent`) that issues certificates."""

    def __init__(self, common_name: str = "Test Root CA", parent: "CertificateAuthority | None" = None,
                 days: float = 3650, not_before_days: float = -1):
        self.key = new_key()
        issuer_name, issuer_key = (parent.certificate.subject, parent.key) if parent else (_name(common_name),
                                                                                           self.key)
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(issuer_name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now() + datetime.timedelta(days=not_before_days))
            .not_valid_after(now() + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False),
                           critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
            .sign(issuer_key, hashes.SHA256())
        )

    @property
    def pem(self) -> str:
        return certificate_pem(self.certificate)

    def issue(self, names=("localhost", "127.0.0.1"), key=None, days: float = 90, not_before_days: float = -1,
              common_name: str | None = None, usages=(ExtendedKeyUsageOID.SERVER_AUTH,), with_names: bool = True):
        """A server certificate for `names` (host names and IP addresses) and its key (a new one by default)."""
        key = key or new_key()
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name or names[0]))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now() + datetime.timedelta(days=not_before_days))
            .not_valid_after(now() + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                           critical=False)
        )
        if with_names:
            builder = builder.add_extension(x509.SubjectAlternativeName([_general_name(name) for name in names]),
                                            critical=False)
        return builder.sign(self.key, hashes.SHA256()), key


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def write(path: pathlib.Path, text: str) -> pathlib.Path:
    path.write_text(text)
    return path
