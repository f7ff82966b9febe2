#!/usr/bin/env python3
"""Fails when the repository holds something that looks like a secret (issue 9: no secret in the repository).

Scans the files git tracks (`git ls-files`, from the repository root), or the files given as arguments (a
pre-commit hook passes the staged ones), and prints one line per finding, `path:line: rule: detail`, with the
secret masked. Exit status: 0 clean, 1 findings, 2 usage or git error. Stdlib only.

Rules:
  hf-token            a Hugging Face token: hf_ and 30 or more letters and digits
  aws-access-key      an AWS access key ID: AKIA and 16 upper-case letters or digits
  private-key         a PEM/OpenSSH/PGP private key header
  secret-assignment   api_key / token / password / secret set to a literal, random-looking value in a YAML, JSON,
                      INI or env file (not a Jinja expression, a lookup, an environment reference, a file path, an
                      empty value or an obvious placeholder such as changeme, <...> or example)
  unencrypted-vault   a file named vault.yml or *vault*.yml (not *.example) that ansible-vault has not encrypted

A deliberate fake secret (a test fixture) is allowed by a comment on its line, `# secret-scan: allow <reason>`
(or after `//`, `<!--`); the reason is required. --verbose lists the allowed findings too.
"""

import argparse
import math
import os
import re
import subprocess
import sys
from dataclasses import dataclass

GIT_TIMEOUT = 30
MAX_FILE_BYTES = 2 * 1024 * 1024
BINARY_PROBE_BYTES = 8192
VAULT_HEADER = "$ANSIBLE_VAULT;"

TOKEN_RULES = (
    ("hf-token", re.compile(r"(?<![A-Za-z0-9_])hf_[A-Za-z0-9]{30,}(?![A-Za-z0-9])")),
    ("aws-access-key", re.compile(r"(?<![A-Z0-9])AKIA[0-9A-Z]{16}(?![A-Z0-9])")),
    ("private-key", re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----")),
)
ALLOW_COMMENT = re.compile(r"(?:#|//|<!--)\s*secret-scan:\s*allow\b[ \t]*(?P<reason>[^\n]*?)\s*(?:-->.*)?$")

# A key whose name ends with one of these words holds a secret: vllm_service_api_key, hf_token, db_password.
SECRET_KEY = r"[A-Za-z0-9_.-]*?(?:api[_-]?key|token|passw(?:or)?d|secret(?:[_-]?key)?|access[_-]?key)"
YAML_ASSIGNMENT = re.compile(
    rf"^(?P<indent>\s*)(?:-\s+)?[\"']?(?P<key>{SECRET_KEY})[\"']?\s*:(?:\s+(?P<value>.*?))?\s*$", re.IGNORECASE)
JSON_ASSIGNMENT = re.compile(
    rf"\"(?P<key>{SECRET_KEY})\"\s*:\s*(?P<value>\"(?:[^\"\\]|\\.)*\"|[^,}}\]\s]+)", re.IGNORECASE)
INI_ASSIGNMENT = re.compile(
    rf"(?:^|(?<=\s))(?:export\s+)?(?P<key>{SECRET_KEY})\s*=\s*(?P<value>\"[^\"]*\"|'[^']*'|\S+)", re.IGNORECASE)
YAML_BLOCK_INDICATOR = re.compile(r"^[|>][-+0-9]*$")
PLACEHOLDER = re.compile(
    r"change[-_ ]?me|example|placeholder|redacted|dummy|your[-_ ]|replace[-_ ]?me|xxxx|<[^>]+>|\*{3,}|\.\.\.|"
    r"\btodo\b|\bfixme\b|not[-_ ]?a[-_ ]?secret", re.IGNORECASE)
NOT_A_VALUE = {"null", "~", "none", "true", "false", "yes", "no"}
REFERENCE_PREFIXES = ("lookup(", "query(", "q(", "!vault", "$", "%(", "/", "./", "../", "~/")
MIN_SECRET_LENGTH = 8
MIN_ENTROPY_BITS = 3.0

YAML_SUFFIXES = (".yml", ".yaml")
INI_SUFFIXES = (".ini", ".cfg", ".conf", ".env", ".properties")


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    rule: str
    detail: str
    allowed_because: str = ""

    def __str__(self):
        text = f"{self.path}:{self.line}: {self.rule}: {self.detail}"
        return f"{text} (allowed: {self.allowed_because})" if self.allowed_because else text


def mask(secret):
    """Enough to find the value again, never the value: at most its first four characters, and its length."""
    shown = secret[:4] if len(secret) >= 12 else ""
    return f"{shown}***({len(secret)} chars)"


def shannon_entropy(text):
    counts = {char: text.count(char) for char in set(text)}
    return -sum(count / len(text) * math.log2(count / len(text)) for count in counts.values())


def is_placeholder(value):
    return bool(PLACEHOLDER.search(value)) or len(set(value)) <= 2


def looks_random(value):
    """Long enough, varied enough and mixing letter cases or digits: not a word, a name or a number."""
    classes = sum(bool(re.search(pattern, value)) for pattern in ("[a-z]", "[A-Z]", "[0-9]"))
    return len(value) >= MIN_SECRET_LENGTH and classes >= 2 and shannon_entropy(value) >= MIN_ENTROPY_BITS


def literal_secret(value):
    """The value if it is a literal that looks like a real secret, else None (templated, referenced, empty,
    a placeholder, or plain words)."""
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        value = value[1:-1]
    if value.startswith("!unsafe "):
        value = value[len("!unsafe "):].strip().strip("\"'")
    if (not value or "{{" in value or "{%" in value or value.lower() in NOT_A_VALUE
            or value.startswith(REFERENCE_PREFIXES) or is_placeholder(value)):
        return None
    return value if looks_random(value) else None


def file_format(path):
    """yaml, json, ini or None (no assignment rule) from the name; a Jinja template is judged by what it renders."""
    name = os.path.basename(path).lower()
    if name.endswith(".j2"):
        name = name[:-3]
    if name.endswith(YAML_SUFFIXES):
        return "yaml"
    if name.endswith(".json"):
        return "json"
    if name.endswith(INI_SUFFIXES) or name.startswith(".env") or name == "hosts":
        return "ini"
    return None


def is_vault_file(path):
    name = os.path.basename(path).lower()
    return "vault" in name and name.endswith(YAML_SUFFIXES) and ".example" not in name


def _strip_yaml_comment(value):
    """A YAML value without its trailing comment: a quoted scalar up to its closing quote, else up to " #"."""
    quoted = re.match(r"(\"(?:[^\"\\]|\\.)*\"|'(?:[^']|'')*')", value)
    if quoted:
        return quoted.group()
    return re.split(r"\s+#", value, maxsplit=1)[0]


def _yaml_block(lines, index, key_indent):
    """The lines of a block scalar that starts after lines[index], joined, and the number of its first line."""
    block = []
    for line in lines[index + 1:]:
        if line.strip() and len(line) - len(line.lstrip()) <= key_indent:
            break
        block.append(line.strip())
    return " ".join(part for part in block if part), index + 2


def assignments(lines, file_kind):
    """(line number, key, value, line number of the key) of every secret-named key the file assigns."""
    for index, line in enumerate(lines):
        if file_kind == "yaml":
            match = YAML_ASSIGNMENT.match(line)
            if not match or match["value"] is None:
                continue
            value = _strip_yaml_comment(match["value"]).strip()
            if YAML_BLOCK_INDICATOR.match(value):
                value, number = _yaml_block(lines, index, len(match["indent"]))
                yield number, match["key"], value, index + 1
            else:
                yield index + 1, match["key"], value, index + 1
        else:
            pattern = JSON_ASSIGNMENT if file_kind == "json" else INI_ASSIGNMENT
            for match in pattern.finditer(line):
                yield index + 1, match["key"], match["value"], index + 1


def _allow_reason(*lines):
    """The reason of the first allow comment among the lines, with anything token-like in it masked."""
    for line in lines:
        match = ALLOW_COMMENT.search(line)
        if match and match["reason"]:
            reason = match["reason"]
            for _, pattern in TOKEN_RULES:
                reason = pattern.sub(lambda token: mask(token.group()), reason)
            return reason
    return ""


def scan_text(path, text):
    """Every finding in one file's text, allowed ones included (marked with their reason)."""
    lines = text.splitlines()
    findings = []

    def add(number, rule, detail, *allow_lines):
        reason = _allow_reason(lines[number - 1] if 0 < number <= len(lines) else "", *allow_lines)
        findings.append(Finding(path, number, rule, detail, reason))

    if is_vault_file(path) and not text.startswith(VAULT_HEADER):
        add(1, "unencrypted-vault", "not encrypted with ansible-vault (first line is not $ANSIBLE_VAULT;...)")
    if text.startswith(VAULT_HEADER):
        return findings
    for number, line in enumerate(lines, start=1):
        for rule, pattern in TOKEN_RULES:
            for match in pattern.finditer(line):
                if rule == "private-key":
                    add(number, rule, match.group())  # the header names the kind of key; the key follows it
                elif not is_placeholder(match.group()):
                    add(number, rule, mask(match.group()))
    file_kind = file_format(path)
    if file_kind:
        for number, key, value, key_number in assignments(lines, file_kind):
            secret = literal_secret(value)
            if secret:
                add(number, "secret-assignment", f"{key} = {mask(secret)}", lines[key_number - 1])
    return findings


def read_text(path):
    """The file's text, or None for what is not a scannable text file (binary, too large, a symlink, missing)."""
    if os.path.islink(path) or not os.path.isfile(path) or os.path.getsize(path) > MAX_FILE_BYTES:
        return None
    with open(path, "rb") as handle:
        data = handle.read()
    if b"\0" in data[:BINARY_PROBE_BYTES]:
        return None
    return data.decode("utf-8", errors="replace")


def git_files(include_untracked):
    """The repository root and the files git tracks (and, if asked, the untracked files it does not ignore)."""
    root = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True, check=True,
                          timeout=GIT_TIMEOUT).stdout.strip()
    command = ["git", "-C", root, "ls-files", "-z"]
    if include_untracked:
        command += ["--cached", "--others", "--exclude-standard"]
    listing = subprocess.run(command, capture_output=True, check=True, timeout=GIT_TIMEOUT).stdout
    return root, sorted({name for name in listing.decode("utf-8", errors="surrogateescape").split("\0") if name})


def scan_files(root, names):
    findings = []
    for name in names:
        text = read_text(os.path.join(root, name))
        if text is not None:
            findings.extend(scan_text(name, text))
    return findings


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", help="files to scan (default: every file git tracks)")
    parser.add_argument("-v", "--verbose", action="store_true", help="also list allowed findings")
    parser.add_argument("--untracked", action="store_true",
                        help="with no paths: also scan untracked files that git does not ignore")
    args = parser.parse_args(argv)
    if args.paths:
        not_files = [path for path in args.paths if os.path.isdir(path)]
        if not_files:
            parser.error(f"not a file: {', '.join(not_files)}")
        root, names = ".", args.paths
    else:
        try:
            root, names = git_files(args.untracked)
        except (OSError, subprocess.SubprocessError) as error:
            print(f"check_secrets: cannot list the repository's files with git: {error}", file=sys.stderr)
            return 2
    findings = scan_files(root, names)
    blocking = [finding for finding in findings if not finding.allowed_because]
    for finding in findings:
        if args.verbose or not finding.allowed_because:
            print(finding)
    if blocking or args.verbose:
        print(f"check_secrets: {len(blocking)} finding(s), {len(findings) - len(blocking)} allowed, "
              f"{len(names)} file(s) scanned", file=sys.stderr)
    return 1 if blocking else 0


if __name__ == "__main__":
    sys.exit(main())
