"""DKIM key files, DNS records and the `dkim:` section of config.yaml."""

from __future__ import annotations

import base64
import os
import re
import subprocess
import textwrap
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.config import load_config
from gateway.errors import ConfigError
from gateway.signing.keys import (
    KeyFileError,
    PrivateKey,
    RecordStatus,
    compare_record,
    dns_record_value,
    generate_private_key,
    normalize_domain,
    parse_private_key,
    read_private_key,
    write_private_key,
    zone_record,
)
from gateway.signing.keytool import keygen
from gateway.signing.settings import DEFAULT_SIGNED_HEADERS, DkimConfig


@pytest.fixture(scope="module")
def rsa_pem() -> bytes:
    return generate_private_key("rsa")


# -- key files --------------------------------------------------------------------------------


def test_rsa_key_gives_dkimpy_form_and_spki_record(rsa_pem: bytes) -> None:
    key = parse_private_key(rsa_pem)
    assert (key.algorithm, key.bits) == ("rsa", 2048)
    assert key.material.startswith(b"-----BEGIN RSA PRIVATE KEY-----\n")  # PKCS#1 for dkimpy
    assert base64.b64decode(key.public_key).startswith(b"\x30\x82\x01\x22")  # SPKI DER
    assert dns_record_value(key) == f"v=DKIM1; k=rsa; p={key.public_key}"


def test_ed25519_key_in_pem_and_in_dknewkey_seed_form() -> None:
    pem = generate_private_key("ed25519")
    key = parse_private_key(pem)
    assert (key.algorithm, len(base64.b64decode(key.public_key))) == ("ed25519", 32)
    seed = key.material  # dkimpy's form is also what dknewkey writes
    assert parse_private_key(seed + b"\n") == key


def test_pkcs1_rsa_files_are_read_too(rsa_pem: bytes) -> None:
    key = parse_private_key(rsa_pem)
    assert parse_private_key(key.material) == key


@pytest.mark.parametrize(("data", "message"), [
    (b"hello", "neither a PEM private key nor a base64 Ed25519 seed"),
    (b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "not a PEM private key"),
])
def test_unusable_key_data(data: bytes, message: str) -> None:
    with pytest.raises(KeyFileError, match=message):
        parse_private_key(data)


def test_other_key_types_small_rsa_and_encrypted_keys_are_refused() -> None:
    ec_pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    with pytest.raises(KeyFileError, match="not an RSA or Ed25519 key"):
        parse_private_key(ec_pem)
    # cryptography will not make a key this small; openssl still does.
    small = subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt",
                            "rsa_keygen_bits:512"], capture_output=True, check=True).stdout
    with pytest.raises(KeyFileError, match="512 bits: DKIM needs at least 1024"):
        parse_private_key(small)
    encrypted = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"))
    with pytest.raises(KeyFileError, match="encrypted"):
        parse_private_key(encrypted)


def test_write_is_0600_whatever_the_umask_and_never_overwrites_by_default(
        tmp_path: Path, rsa_pem: bytes) -> None:
    path = tmp_path / "keys" / "example.com.s1.key"
    old = os.umask(0)
    try:
        write_private_key(path, rsa_pem)
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    with pytest.raises(FileExistsError, match="--force"):
        write_private_key(path, generate_private_key("ed25519"))
    write_private_key(path, generate_private_key("ed25519"), overwrite=True)
    assert read_private_key(path).algorithm == "ed25519"
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left


def test_read_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match=r"nothere.key': no such file"):
        read_private_key(tmp_path / "nothere.key")


def test_normalize_domain() -> None:
    assert normalize_domain("Example.COM.") == "example.com"
    assert normalize_domain("bücher.example") == "xn--bcher-kva.example"
    for bad in ("", ".example.com", "a..b", "[192.0.2.1]", "a b.example"):
        with pytest.raises(ValueError):
            normalize_domain(bad)


# -- DNS records -------------------------------------------------------------------------------


def test_zone_record_splits_into_255_octet_strings(rsa_pem: bytes) -> None:
    key = parse_private_key(rsa_pem)
    line = zone_record("s1", "example.com", dns_record_value(key))
    assert line.startswith("s1._domainkey.example.com. 3600 IN TXT ( \"v=DKIM1; k=rsa; p=")
    strings = re.findall(r'"([^"]*)"', line)
    assert [len(s) <= 255 for s in strings] == [True, True]
    assert "".join(strings) == dns_record_value(key)


@pytest.fixture(scope="module")
def key(rsa_pem: bytes) -> PrivateKey:
    return parse_private_key(rsa_pem)


@pytest.mark.parametrize(("record", "status"), [
    ("{ok}", RecordStatus.OK),
    ("v=DKIM1;  k=rsa;\tp={p_spaced}", RecordStatus.OK),
    ("k=rsa; p={p}", RecordStatus.OK),  # v= is optional
    ("p={p}", RecordStatus.OK),  # k=rsa is the default
    ("v=DKIM1; k=rsa; p={truncated}", RecordStatus.TRUNCATED),
    ("v=DKIM1; k=rsa; p={other}", RecordStatus.MISMATCH),
    ("v=DKIM1; k=rsa; p=", RecordStatus.REVOKED),
    ("v=DKIM1; k=ed25519; p={p}", RecordStatus.WRONG_ALGORITHM),
    ("v=spf1 -all", RecordStatus.MALFORMED),
    ("k=rsa; v=DKIM1; p={p}", RecordStatus.MALFORMED),  # v= must come first
    ("v=DKIM1; k=rsa", RecordStatus.MALFORMED),
])
def test_compare_record(key: PrivateKey, record: str, status: RecordStatus) -> None:
    other = parse_private_key(generate_private_key("rsa", 1024)).public_key
    text = record.format(ok=dns_record_value(key), p=key.public_key, other=other,
                         p_spaced=" ".join([key.public_key[:100], key.public_key[100:]]),
                         truncated=key.public_key[:250])
    assert compare_record(text, key)[0] is status


# -- config.yaml: dkim -------------------------------------------------------------------------


def write(tmp_path: Path, dkim: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text("data_dir: ./var\ndkim:\n" + textwrap.indent(textwrap.dedent(dkim), "  "))
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return [str(p).split(": ", 1)[1] if ": " in str(p) else str(p)
            for p in info.value.problems]


def make_key(tmp_path: Path, name: str, algorithm: str = "rsa", pem: bytes | None = None) -> Path:
    path = tmp_path / "dkim" / name
    write_private_key(path, pem or generate_private_key(algorithm), overwrite=True)
    return path


def test_no_dkim_section_means_no_signing(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("data_dir: ./var\n")
    dkim = load_config(path).dkim
    assert not dkim.signing and dkim.keys == ()
    assert dkim.signed_headers == DEFAULT_SIGNED_HEADERS
    assert (dkim.fallback, dkim.canonicalization, dkim.oversigned_headers) == (
        "unsigned", "relaxed/relaxed", ("From",))


def test_full_dkim_section(tmp_path: Path, rsa_pem: bytes) -> None:
    make_key(tmp_path, "example.com.s2.key", pem=rsa_pem)
    make_key(tmp_path, "example.com.s1.key")
    make_key(tmp_path, "example.com.ed.key", "ed25519")
    make_key(tmp_path, "other.pem", "ed25519")
    path = write(tmp_path, """\
        domains:
          Example.COM:
            - {selector: s2, active: true}
            - {selector: s1}
            - {selector: ed, algorithm: ed25519, active: true}
          example.org:
            - {selector: x, algorithm: ed25519, key_file: dkim/other.pem, active: true}
        domain_map:
          .example.com: example.com
          brand.test: example.org
        fallback: sign_with_default
        default_domain: example.org
        canonicalization: relaxed/simple
        signed_headers: [From, Subject]
        oversigned_headers: [From, Subject]
        dual_sign: true
        """)
    dkim = load_config(path).dkim
    assert dkim.signing
    assert [(k.domain, k.selector, k.algorithm, k.active) for k in dkim.keys] == [
        ("example.com", "s2", "rsa", True), ("example.com", "s1", "rsa", False),
        ("example.com", "ed", "ed25519", True), ("example.org", "x", "ed25519", True)]
    assert dkim.keys[0].key_file == tmp_path / "dkim" / "example.com.s2.key"
    assert dkim.keys[0].private_key == parse_private_key(rsa_pem)
    assert dkim.keys[3].key_file == tmp_path / "dkim" / "other.pem"
    assert dkim.domain_map == ((".example.com", "example.com"), ("brand.test", "example.org"))
    assert (dkim.fallback, dkim.default_domain, dkim.canonicalization) == (
        "sign_with_default", "example.org", "relaxed/simple")
    assert (dkim.signed_headers, dkim.oversigned_headers) == (("From", "Subject"),
                                                              ("From", "Subject"))


def test_a_key_readable_by_others_refuses_the_config_with_its_position(tmp_path: Path) -> None:
    make_key(tmp_path, "example.com.s1.key").chmod(0o640)
    path = write(tmp_path, "domains:\n  example.com:\n    - {selector: s1, active: true}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    (problem,) = info.value.problems
    assert (problem.line, problem.column) == (5, 20)  # the selector
    assert "example.com.s1.key' is open to other users (mode 0640): chmod 600 it" in str(problem)
    assert "BEGIN" not in str(problem)


def test_missing_key_file_says_how_to_make_it_and_read_keys_false_skips_it(
        tmp_path: Path) -> None:
    path = write(tmp_path, "domains:\n  example.com:\n    - {selector: s1, active: true}\n")
    (problem,) = problems(path)
    assert problem.endswith("example.com.s1.key': no such file (make it with: smtp-gateway dkim "
                            "keygen --domain example.com --selector s1 --algo rsa)")
    config = load_config(path, read_keys=False)
    assert config.dkim.keys[0].private_key is None


@pytest.mark.parametrize(("dkim", "expected"), [
    ("domains:\n  example.com:\n    - {selector: s1}\n",
     "example.com: no key is active: set 'active: true' on the one to sign with"),
    ("domains:\n  example.com:\n    - {selector: s1, active: true}\n"
     "    - {selector: s2, active: true}\n",
     "example.com: 2 keys are active (s1, s2); one signs at a time (dual_sign: true signs "
     "with one RSA and one Ed25519 key)"),
    ("dual_sign: true\ndomains:\n  example.com:\n    - {selector: s1, active: true}\n"
     "    - {selector: s2, active: true}\n",
     "example.com: two active keys of one algorithm; dual signing uses one RSA and one "
     "Ed25519 key"),
    ("domains:\n  example.com:\n    - {selector: s1, active: true}\n"
     "    - {selector: s1}\n", "example.com: selector 's1' is listed twice"),
    ("domains:\n  example.com:\n    - {selector: s1, active: true, algorithm: ed25519}\n",
     "holds an rsa key, not ed25519"),
    ("domains:\n  example.com:\n    - {selector: 'bad selector', active: true}\n",
     "needs a 'selector': DNS labels of letters, digits, - and _"),
    ("domains:\n  example.com:\n    - {selector: s1, active: true, colour: red}\n",
     "unknown key 'colour' in 'dkim.domains.example.com[0]'"),
    ("fallback: sign_with_default\ndomains:\n  example.com:\n    - {selector: s1, active: true}\n",
     "fallback: sign_with_default needs 'default_domain'"),
    ("fallback: refuse\n", "fallback: refuse needs keys in 'dkim.domains'"),
    ("fallback: maybe\n", "'dkim.fallback': 'maybe' is not one of: sign_with_default, "
     "unsigned, refuse"),
    ("default_domain: nokeys.example\ndomains:\n  example.com:\n"
     "    - {selector: s1, active: true}\n",
     "'nokeys.example' has no keys in 'dkim.domains'"),
    ("domain_map: {.example.net: elsewhere.example}\n",
     "'elsewhere.example' has no keys in 'dkim.domains'"),
    ("domain_map: {example.com: example.com}\ndomains:\n  example.com:\n"
     "    - {selector: s1, active: true}\n",
     "'example.com' has keys of its own: remove it from 'dkim.domain_map'"),
    ("canonicalization: relaxed\n", "'dkim.canonicalization': 'relaxed' is not one of"),
    ("signed_headers: [Subject, To]\n",
     "'From' must be among the signed headers (RFC 6376 5.4)"),
    ("signed_headers: [From, Received]\n", "'Received' must not be signed: later hops add or "
     "remove it, which would break the signature"),
    ("oversigned_headers: ['Bad Name']\n", "'Bad Name' is not a header field name"),
])
def test_dkim_config_errors(tmp_path: Path, dkim: str, expected: str) -> None:
    make_key(tmp_path, "example.com.s1.key")
    make_key(tmp_path, "example.com.s2.key")
    found = problems(write(tmp_path, dkim))
    assert any(expected in p for p in found), found


def test_keygen_writes_where_the_config_expects_it(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        keys_dir: /nonexistent-not-used
        domains:
          example.com:
            - {selector: s1, algorithm: ed25519, key_file: keys/custom.pem, active: true}
        """)
    dkim = load_config(path, read_keys=False).dkim
    made = keygen(dkim, "example.com", "s1")
    assert made.path == tmp_path / "keys" / "custom.pem" and made.configured
    assert made.key.algorithm == "ed25519"  # from the config
    assert made.record.startswith("s1._domainkey.example.com. 3600 IN TXT")
    with pytest.raises(ValueError, match="is ed25519, not rsa"):
        keygen(dkim, "example.com", "s1", "rsa", overwrite=True)
    with pytest.raises(ValueError, match="not a selector"):
        keygen(dkim, "example.com", "a b")
    assert load_config(path).dkim.keys[0].private_key == made.key


def test_the_shipped_config_documents_the_defaults() -> None:
    root = Path(__file__).resolve().parents[3]
    dkim = load_config(root / "config.yaml").dkim
    assert not dkim.signing
    assert dkim.keys_dir == root / "dkim"
    defaults = DkimConfig()
    assert (dkim.fallback, dkim.canonicalization, dkim.signed_headers, dkim.oversigned_headers,
            dkim.dual_sign, dkim.enabled) == (
        defaults.fallback, defaults.canonicalization, defaults.signed_headers,
        defaults.oversigned_headers, defaults.dual_sign, defaults.enabled)
