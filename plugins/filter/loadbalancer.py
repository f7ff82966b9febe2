"""Filters of the loadbalancer role: what is wrong with its TLS settings and with the certificate, chain and key
the operator supplies, checked on the controller before any host is changed.

`loadbalancer_tls_settings_problems` checks the variables themselves (which are set, the files, the ports, the
thresholds) without reading any key. `loadbalancer_tls_certificate_report` reads the PEM text and returns the
problems that refuse it and the warnings (a certificate that expires soon). Every message names the variable and
the fix; none quotes key material.
"""

import datetime
import ipaddress
import os
import re

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

DOCUMENTATION = r"""
name: loadbalancer_tls_settings_problems
short_description: What is wrong with the loadbalancer role's TLS variables
description:
  - Returns one message per broken rule (see the role's README, "TLS"), empty when the settings are valid.
positional: _input
options:
  _input:
    description:
      - The role's C(_loadbalancer_tls_settings) (vars/main.yml), the presence of the PEM text only, never the text.
    type: dict
    required: true
"""

PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----\s.*?-----END \1-----", re.DOTALL)
RUNBOOK = "docs/runbooks/rotate-tls-certificate.md"
# OpenSSL's default security level on current distributions refuses shorter RSA keys.
MIN_RSA_BITS = 2048


def _file_problems(variable, path):
    if not os.path.isabs(path):
        return [f"{variable} is {path!r}, a relative path: give the absolute path of the file on the controller "
                "(for a file next to the inventory: \"{{ inventory_dir }}/files/<name>\")."]
    if not os.path.isfile(path):
        return [f"{variable} is {path}, which is not a file on the controller: correct the path, or copy the "
                "file there."]
    if not os.access(path, os.R_OK):
        return [f"{variable} is {path}, which the user running Ansible cannot read: make it readable to that "
                "user (keep a private key encrypted with ansible-vault rather than open to everyone)."]
    return []


def _source_problems(settings, what, content_variable, file_variable):
    """The PEM text of `what` comes from exactly one of its two variables."""
    given, path = settings[f"{what}_given"], settings[f"{what}_file"]
    label = what.replace("_", " ")
    if given and path:
        return [f"{content_variable} and {file_variable} are both set: keep one, the PEM text (from the vault) or "
                f"the path of the {label} file on the controller."]
    if not given and not path:
        return [f"TLS is on (loadbalancer_tls_enabled) but neither {content_variable} nor {file_variable} is set: "
                f"give the {label} in PEM, from the vault or from a file on the controller (see the loadbalancer "
                "README, \"TLS\"), or set loadbalancer_tls_enabled to false."]
    return _file_problems(file_variable, path) if path else []


def _is_port(value):
    return not isinstance(value, bool) and str(value).isdigit() and 1 <= int(value) <= 65535


def loadbalancer_tls_settings_problems(settings):
    """Every broken rule of the TLS variables; nothing when TLS is off."""
    if not settings["enabled"]:
        return []
    problems = _source_problems(settings, "certificate", "loadbalancer_tls_certificate",
                                "loadbalancer_tls_certificate_file")
    problems += _source_problems(settings, "private_key", "loadbalancer_tls_private_key",
                                 "loadbalancer_tls_private_key_file")
    if settings["ca_file"]:
        problems += _file_problems("loadbalancer_tls_ca_file", settings["ca_file"])

    tls_port, http_mode = settings["tls_port"], settings["http_mode"]
    if not _is_port(tls_port):
        problems.append(f"loadbalancer_tls_port is {tls_port!r}: give a port number from 1 to 65535 (443 is the "
                        "one clients assume for https).")
    elif http_mode != "close" and int(tls_port) == int(settings["port"]):
        problems.append(f"loadbalancer_tls_port and loadbalancer_port are both {tls_port}, but plain HTTP "
                        f"(loadbalancer_http_mode: {http_mode}) needs a port of its own: give loadbalancer_port "
                        "another one, or set loadbalancer_http_mode to close.")
    # Their types were checked against the argument spec before.
    for variable in ("loadbalancer_tls_expiry_refuse_days", "loadbalancer_tls_expiry_warn_days",
                     "loadbalancer_tls_hsts_max_age"):
        value = int(settings[variable.removeprefix("loadbalancer_tls_")])
        if value < 0:
            problems.append(f"{variable} is {value}: give 0 or more (0 turns it off).")
    return problems


# --- the certificate, its chain and its key -------------------------------------------------------------------

def _blocks(text):
    """The PEM blocks of a text: (label, the block's text)."""
    return [(match.group(1), match.group(0)) for match in PEM_BLOCK.finditer(text or "")]


def _describe(certificate):
    return certificate.subject.rfc4514_string() or "an empty subject"


def _date(moment):
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _certificates(text, variable, what):
    """The certificates of a PEM text, in order, and the problems that make it unusable."""
    certificates, problems = [], []
    for label, block in _blocks(text):
        if "PRIVATE KEY" in label:
            problems.append(f"{variable} holds a private key: {what} is public, keep the key in "
                            "loadbalancer_tls_private_key (from the vault) or loadbalancer_tls_private_key_file, and "
                            "replace this key, which may have been shown where the certificate was.")
        elif label != "CERTIFICATE":
            problems.append(f"{variable} holds a {label} block: only certificates (BEGIN CERTIFICATE) belong there.")
        else:
            try:
                certificates.append(x509.load_pem_x509_certificate(block.encode()))
            except ValueError as error:
                problems.append(f"{variable}: certificate {len(certificates) + 1} cannot be read ({error}): copy it "
                                "again, whole, in PEM.")
    if not certificates and not problems:
        problems.append(f"{variable} holds no certificate in PEM (-----BEGIN CERTIFICATE-----): give {what} in PEM "
                        "(convert DER with `openssl x509 -inform der -in <file>`).")
    return certificates, problems


def _private_key(text, variable):
    """The private key of a PEM text, or the problem that makes it unusable (never its content)."""
    labels = [(label, block) for label, block in _blocks(text) if "PRIVATE KEY" in label]
    if not labels:
        return None, (f"{variable} holds no private key in PEM (a -----BEGIN ... PRIVATE KEY----- block): give the "
                      "key the certificate was issued for, in PEM.")
    if len(labels) > 1:
        return None, f"{variable} holds {len(labels)} private keys: keep only the one of the server certificate."
    label, block = labels[0]
    encrypted = (f"{variable} is encrypted with a passphrase, which HAProxy cannot ask for when it starts: remove the "
                 "passphrase (`openssl pkey -in <key> -out <plain key>`) and keep the plain key in the vault or in "
                 "an ansible-vault encrypted file.")
    if label == "ENCRYPTED PRIVATE KEY" or "Proc-Type: 4,ENCRYPTED" in block:
        return None, encrypted
    try:
        key = serialization.load_pem_private_key(block.encode(), password=None)
    except TypeError:
        return None, encrypted
    except (ValueError, UnsupportedAlgorithm):
        return None, f"{variable} cannot be read as a private key: copy the key file again, whole, in PEM."
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size < MIN_RSA_BITS:
        return None, (f"{variable} is a {key.key_size}-bit RSA key, which clients refuse: make a new key of at least "
                      f"{MIN_RSA_BITS} bits (or an ECDSA P-256 key) and get the certificate issued for it.")
    return key, None


def _public_key_bytes(key):
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _issued_by(certificate, issuer):
    try:
        certificate.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _names(certificate):
    """The DNS names and IP addresses of a certificate's subjectAltName; None without the extension."""
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    return ([name.lower() for name in names.get_values_for_type(x509.DNSName)],
            names.get_values_for_type(x509.IPAddress))


def _covers(names, server_name):
    """Whether the names cover server_name as a client checks it: an IP address against the IP addresses, a
    host name against the DNS names, a wildcard standing for exactly one leftmost label."""
    dns_names, addresses = names
    try:
        return ipaddress.ip_address(server_name) in addresses
    except ValueError:
        pass
    wanted = server_name.lower().rstrip(".")
    for name in dns_names:
        if name == wanted:
            return True
        if name.startswith("*.") and "." in wanted and wanted.split(".", 1)[1] == name[2:]:
            return True
    return False


def _validity(certificate, where, variable, material, now):
    problems, warnings = [], []
    not_before, not_after = certificate.not_valid_before_utc, certificate.not_valid_after_utc
    days_left = (not_after - now).total_seconds() / 86400
    refuse_days, warn_days = int(material["expiry_refuse_days"]), int(material["expiry_warn_days"])
    if not_before > now:
        problems.append(f"{variable}: {where} is not valid before {_date(not_before)}: deploy it from then on, or "
                        "correct the controller's clock if that is what is wrong.")
    elif not_after <= now:
        problems.append(f"{variable}: {where} expired on {_date(not_after)}: renew it ({RUNBOOK}).")
    elif days_left < refuse_days:
        problems.append(f"{variable}: {where} expires on {_date(not_after)}, in {days_left:.1f} days, within "
                        f"loadbalancer_tls_expiry_refuse_days ({refuse_days}): renew it ({RUNBOOK}), or lower "
                        "loadbalancer_tls_expiry_refuse_days to deploy it anyway.")
    elif days_left < warn_days:
        warnings.append(f"{variable}: {where} expires on {_date(not_after)}, in {int(days_left)} days: renew it "
                        f"soon ({RUNBOOK}). loadbalancer_tls_expiry_warn_days ({warn_days}) sets when this warning "
                        "starts.")
    return problems, warnings


def _chain_problems(chain, variable):
    problems = []
    for position, (certificate, issuer) in enumerate(zip(chain, chain[1:]), start=1):
        if not _issued_by(certificate, issuer):
            problems.append(
                f"{variable}: certificate {position + 1} ({_describe(issuer)}) did not issue certificate {position} "
                f"({_describe(certificate)}, issued by {certificate.issuer.rfc4514_string()}): put the server "
                "certificate first, then each intermediate right after the certificate it issued.")
    return problems


def _ca_problems(chain, variable, ca_text, now):
    authorities, problems = _certificates(ca_text, "loadbalancer_tls_ca_file", "a CA bundle")
    if problems:
        return problems
    top = chain[-1]
    if top in authorities:
        return []
    issuers = [ca for ca in authorities if _issued_by(top, ca)]
    if not issuers:
        return [f"{variable} does not lead to a CA of loadbalancer_tls_ca_file: its last certificate "
                f"({_describe(top)}) was issued by {top.issuer.rfc4514_string()}, which is not in that file. Add "
                f"the missing intermediate certificates after the server certificate in {variable}, or point "
                "loadbalancer_tls_ca_file at the CA your clients trust."]
    if all(ca.not_valid_after_utc <= now for ca in issuers):
        return [f"loadbalancer_tls_ca_file: the CA that issued the chain ({_describe(issuers[0])}) expired on "
                f"{_date(issuers[0].not_valid_after_utc)}, so clients cannot verify the chain: get a certificate "
                "from a current CA."]
    return []


def _server_name_problems(leaf, variable, server_name):
    names = _names(leaf)
    if names is None:
        return [f"{variable}: the server certificate has no subjectAltName, so clients (Python, Go, browsers) "
                f"cannot match it to {server_name} (loadbalancer_tls_server_name): get one that lists it as a DNS "
                "name or IP address."]
    if not _covers(names, server_name):
        listed = ", ".join([*names[0], *map(str, names[1])]) or "no DNS name or IP address"
        return [f"{variable}: the server certificate is for {listed}, not for {server_name} "
                "(loadbalancer_tls_server_name): get a certificate whose subjectAltName lists it, or correct "
                "loadbalancer_tls_server_name."]
    return []


def _usage_problems(leaf, variable):
    try:
        usages = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return []
    if ExtendedKeyUsageOID.SERVER_AUTH in usages:
        return []
    return [f"{variable}: the server certificate's extended key usage does not include serverAuth, so clients "
            "refuse it for a server: get a certificate issued for TLS servers."]


def loadbalancer_tls_certificate_report(material):
    """The problems that refuse the certificate, chain and key (`problems`), and the warnings (`warnings`)."""
    variable, key_variable = material["certificate_variable"], material["private_key_variable"]
    chain, problems = _certificates(material["certificate"], variable, "the certificate")
    key, key_problem = _private_key(material["private_key"], key_variable)
    if key_problem:
        problems.append(key_problem)
    if not chain or problems:
        return {"problems": problems, "warnings": []}

    leaf, warnings = chain[0], []
    key_bytes = _public_key_bytes(key.public_key())
    owners = [position for position, certificate in enumerate(chain, start=1)
              if _public_key_bytes(certificate.public_key()) == key_bytes]
    if not owners:
        problems.append(f"{key_variable} does not belong to the server certificate in {variable} "
                        f"({_describe(leaf)}, serial {leaf.serial_number:x}): their public keys differ. Give the key "
                        "the certificate was issued for (a renewed certificate comes with the key of its request).")
    elif owners[0] != 1:
        # Everything else would be judged on the wrong certificate.
        return {"problems": [f"{variable}: the key belongs to certificate {owners[0]} "
                             f"({_describe(chain[owners[0] - 1])}), but the server certificate must come first, then "
                             "its intermediates."], "warnings": []}
    chain_problems = _chain_problems(chain, variable)
    problems += chain_problems

    now = datetime.datetime.now(datetime.timezone.utc)
    for position, certificate in enumerate(chain, start=1):
        where = (f"the server certificate ({_describe(certificate)})" if position == 1
                 else f"intermediate certificate {position} ({_describe(certificate)})")
        found, warned = _validity(certificate, where, variable, material, now)
        problems += found
        warnings += warned

    if material.get("ca_bundle") and not chain_problems:
        problems += _ca_problems(chain, variable, material["ca_bundle"], now)
    if material.get("server_name"):
        problems += _server_name_problems(leaf, variable, material["server_name"])
    elif _names(leaf) is None:
        warnings.append(f"{variable}: the server certificate has no subjectAltName; clients that check the host "
                        "name (Python, Go, browsers) refuse it. Set loadbalancer_tls_server_name to have it checked.")
    problems += _usage_problems(leaf, variable)
    return {"problems": problems, "warnings": warnings}


class FilterModule:
    """Ansible filter plugin entry point."""

    def filters(self):
        return {
            "loadbalancer_tls_settings_problems": loadbalancer_tls_settings_problems,
            "loadbalancer_tls_certificate_report": loadbalancer_tls_certificate_report,
        }
