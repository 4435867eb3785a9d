"""DKIM signing: each message signed for its sender's domain before it is spooled
(Postfix with OpenDKIM as a milter; KumoMTA's `msg:dkim_sign(signer)` in
smtp_server_message_received).

What is signed is the message exactly as it is stored and sent: CRLF line
endings, our Received: on top, after intake's checks and before
`spool.put()`, so every retry and every route sends the same bytes with the
same signature. The DKIM-Signature fields are prepended and the content is
never touched again: re-encoding after signing would break the body hash.

Which key: the domain of the message's single `From:` address (the one DMARC
aligns with) signs with its own active keys; otherwise `domain_map` names the
signing domain (an exact name first, then the longest ".parent" suffix);
otherwise the fallback decides: `sign_with_default` signs with
`default_domain`, `unsigned` passes the message on unsigned, and `refuse`
answers 550 5.7.1. A message without a From: address, or with two From:
fields, takes the fallback too.

A signing failure (dkimpy refusing the message, a key that does not work)
never lets a message go out unsigned by surprise (issue 16): it is counted
(`error`), and the message is signed with the default domain when the fallback
is `sign_with_default` and that works, else answered 451 4.7.0 (`tempfail`,
and a `rejected` event at intake) so that the app keeps it and sends it again
once the operator has fixed the key or the app its message. Only a message
whose From: domain has no key anyway follows `unsigned` or `refuse` when its
header cannot be parsed. The cleanup stage (gateway/cleanup/) runs first and
repairs what dkimpy would choke on (`Subject :`, a line that is no field). With dual signing a
domain's active RSA and Ed25519 keys (RFC 8463) both sign; the RSA signature
comes first, for verifiers that only look at the first one.

How: signature.py computes each DKIM-Signature field on bytes — the header
block intake parsed once (gateway.core.headers), the body hashed in place,
the private-key step in OpenSSL with the key loaded once — byte for byte what
dkimpy writes (tests/unit/signing/test_signature.py). A message whose header
block is not plain fields ended by an empty line, or that has a bare LF, goes
to dkimpy itself, whose parser decides what it means (and refuses what it
cannot parse: the fallback then). There too the RSASSA-PKCS1-v1_5 step is
OpenSSL's (`use_openssl_rsa()`): dkimpy's own is pure Python (about 6 ms per
signature against 0.3 ms).

Security: reads untrusted content: header field names and the From: field,
through gateway.core.headers (or dkimpy's parser) and email.utils. Holds
private keys and never logs or shows them (PrivateKey's repr is a fingerprint);
refusal texts carry only normalized domain names.
"""

from __future__ import annotations

import email.utils
import functools
import logging
import re
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import dkim
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from gateway import metrics
from gateway.cleanup.header import parse
from gateway.core.headers import HeaderSection
from gateway.model import Reply
from gateway.signing import signature
from gateway.signing.keys import normalize_domain
from gateway.signing.settings import DkimConfig
from gateway.signing.signature import SigningKey, fast_path_applies, load_key

__all__ = [
    "DkimSigner",
    "SignOutcome",
    "SignResult",
    "SigningCounters",
    "from_domain",
    "refusal_reply",
]

log = logging.getLogger(__name__)

_DKIMPY_ALGORITHMS = {"rsa": b"rsa-sha256", "ed25519": b"ed25519-sha256"}
_FOLD = re.compile(rb"\r?\n(?=[ \t])")


class SignOutcome(StrEnum):
    SIGNED = "signed"
    UNSIGNED = "unsigned"
    REFUSED = "refused"
    TEMPFAIL = "tempfail"  # a key should have signed and could not: 451, the app retries


@dataclass(frozen=True)
class SignResult:
    outcome: SignOutcome
    content: bytes = field(repr=False)  # signature fields + the content, or the content as is
    domain: str = ""  # d= of the signatures
    selectors: tuple[str, ...] = ()
    reason: str = ""  # why the From: domain's own key did not sign; "" when it did


@dataclass
class SigningCounters:
    """Messages by outcome (each counted once), plus signing errors.

    Kept across reloads (the supervisor hands them to the new signer), so they
    only grow, as the metrics exporter expects.
    """

    signed: int = 0
    unsigned: int = 0
    refused: int = 0
    tempfail: int = 0  # answered 451: signing should have happened and failed
    failed: int = 0  # dkimpy errors; the message is also counted in its outcome
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count(self, outcome: SignOutcome, failures: int) -> None:
        # Large messages are signed in a worker thread: `+=` is not atomic there.
        metrics.record_signing(outcome.value, failures)
        with self.lock:
            self.failed += failures
            if outcome is SignOutcome.SIGNED:
                self.signed += 1
            elif outcome is SignOutcome.UNSIGNED:
                self.unsigned += 1
            elif outcome is SignOutcome.TEMPFAIL:
                self.tempfail += 1
            else:
                self.refused += 1


_Attempt = Callable[[str, str], "SignResult | None"]  # (domain, reason) → signed, or None


def signer_for(config: DkimConfig, counters: SigningCounters) -> DkimSigner | None:
    """The signer a configuration asks for; None when signing is off (no keys, or disabled)."""
    return DkimSigner(config, counters) if config.signing else None


def refusal_reply(result: SignResult) -> Reply:
    if result.outcome is SignOutcome.TEMPFAIL:
        return Reply(451, "4.7.0", f"Message not accepted for now: DKIM signing failed "
                     f"({result.reason}); try again later")
    return Reply(550, "5.7.1", f"Message refused: cannot DKIM-sign it ({result.reason})")


_OPENSSL_KEYS: dict[int, rsa.RSAPrivateKey] = {}  # by modulus: a few keys, reused
_PREHASHED = {"sha256": Prehashed(hashes.SHA256()), "sha1": Prehashed(hashes.SHA1())}


def _openssl_rsa_sign(digest: Any, private_key: dict[str, int]) -> bytes:
    """dkimpy's RSASSA_PKCS1_v1_5_sign(hash, key), computed by OpenSSL."""
    key = _OPENSSL_KEYS.get(private_key["modulus"])
    if key is None:
        public = rsa.RSAPublicNumbers(private_key["publicExponent"], private_key["modulus"])
        key = rsa.RSAPrivateNumbers(
            private_key["prime1"], private_key["prime2"], private_key["privateExponent"],
            private_key["exponent1"], private_key["exponent2"], private_key["coefficient"],
            public,
        ).private_key()
        _OPENSSL_KEYS[private_key["modulus"]] = key
    return key.sign(digest.digest(), padding.PKCS1v15(), _PREHASHED[digest.name.lower()])


def use_openssl_rsa() -> None:
    """Make dkimpy's RSA signing step use OpenSSL (see the module docstring)."""
    dkim.RSASSA_PKCS1_v1_5_sign = _openssl_rsa_sign


class DkimSigner:
    """Signs final CRLF messages with the keys of one DkimConfig; pure but for counters."""

    def __init__(self, config: DkimConfig, counters: SigningCounters | None = None) -> None:
        use_openssl_rsa()
        self.config = config
        self.counters = counters or SigningCounters()
        self._keys = _active_keys(config)
        self._map = dict(config.domain_map)
        # Longest suffix first, so ".eu.example.com" wins over ".example.com".
        self._suffixes = sorted(((p, d) for p, d in config.domain_map if p.startswith(".")),
                                key=lambda item: -len(item[0]))
        header, body = config.canonicalization.split("/")
        self._canonicalize = (header.encode(), body.encode())
        self._signed = [h.lower().encode() for h in config.signed_headers]
        self._oversigned = [h.lower().encode() for h in config.oversigned_headers]

    def __repr__(self) -> str:
        c = self.counters
        return (f"<DkimSigner domains={len(self._keys)} fallback={self.config.fallback} "
                f"signed={c.signed} unsigned={c.unsigned} refused={c.refused} "
                f"failed={c.failed}>")

    def signing_domain(self, from_domain: str | None) -> str | None:
        """The domain whose keys sign mail from `from_domain`, or None (the fallback)."""
        if from_domain is None:
            return None
        if from_domain in self._keys:
            return from_domain
        if from_domain in self._map:
            return self._map[from_domain]
        for suffix, domain in self._suffixes:
            if from_domain.endswith(suffix):
                return domain
        return None

    def sign(self, content: bytes, header: HeaderSection | None = None, *,
             crlf: bool = False, timestamp: int | None = None) -> SignResult:
        """Sign `content` (the final CRLF message) or say why not; never raises.

        `header`: the content's header block if the caller has parsed it (intake
        has); `crlf`: every line is known to end in CRLF (intake normalized them);
        `timestamp`: t= (default now)."""
        header = HeaderSection.parse(content) if header is None else header
        if fast_path_applies(content, header, crlf=crlf):
            include = self._include(Counter(n.encode("ascii") for n, _, _, _ in header.fields))
            sender, reason = from_domain(header.values("from"))
            unparsed = self._unparsed_from(content, sender, reason)
            if unparsed is not None:
                return unparsed
            parsed = header

            def attempt(domain: str, why: str) -> SignResult | None:
                return self._try_fast(content, parsed, include, domain, why, timestamp)
            return self._sign_for(content, sender, reason, attempt, 0)
        return self._sign_with_dkimpy(content)

    def _sign_with_dkimpy(self, content: bytes) -> SignResult:
        """Messages the fast path does not take (signature.fast_path_applies), as before."""
        try:
            message = dkim.DKIM(content, linesep=b"\r\n")
        except Exception as exc:
            log.warning("DKIM: cannot parse the header: %s", _describe(exc))
            # Whose mail is it? Cleanup's lenient parser still finds a From: address.
            return self._sign_for(content, _lenient_from_domain(content),
                                  "its header cannot be parsed", None, 1)
        sender, reason = from_domain([v for n, v in message.headers if n.lower() == b"from"])
        unparsed = self._unparsed_from(content, sender, reason)
        if unparsed is not None:
            return unparsed

        def attempt(domain: str, why: str) -> SignResult | None:
            return self._try(message, content, domain, why)
        return self._sign_for(content, sender, reason, attempt, 0)

    def _unparsed_from(self, content: bytes, sender: str | None, reason: str
                       ) -> SignResult | None:
        """dkimpy (and the fast path's parser) skip a line "From :", taking it for an mbox
        "From " line: the message may well have a From: that a key should sign, so it
        is answered 451 rather than relayed unsigned."""
        if sender is not None or reason != "no From: header":
            return None
        lenient = _lenient_from_domain(content)
        if lenient is None:
            return None
        return self._sign_for(content, lenient, "its From: field cannot be parsed", None, 1)

    def _sign_for(self, content: bytes, sender: str | None, reason: str, attempt: _Attempt | None,
                  failures: int) -> SignResult:
        """The From: domain's keys, else the fallback (`attempt` is None: cannot be signed)."""
        domain = self.signing_domain(sender)
        reason = reason or f"no DKIM key for {sender}"
        if attempt is not None and domain is not None:
            result = attempt(domain, "")
            if result is not None:
                return self._done(result, failures)
            failures += 1
            reason = f"signing for {domain} failed"
        default = self.config.default_domain
        if self.config.fallback == "sign_with_default" and attempt is not None and default \
                and default != domain:
            result = attempt(default, reason)
            if result is not None:
                return self._done(result, failures)
            failures += 1
            reason += f"; signing for {default} failed"
        if failures and (domain is not None or self.config.fallback == "sign_with_default"):
            # A key should have signed it: never unsigned (nor a 5xx) for our failure.
            log.warning("DKIM: answering 451: %s", reason)
            return self._done(SignResult(SignOutcome.TEMPFAIL, content, domain or "",
                                         reason=reason), failures)
        outcome = SignOutcome.REFUSED if self.config.fallback == "refuse" \
            else SignOutcome.UNSIGNED
        # A refusal is an operator's concern (a sender without a key); unsigned is routine.
        log.log(logging.INFO if outcome is SignOutcome.REFUSED else logging.DEBUG,
                "DKIM: %s: %s", outcome, reason)
        return self._done(SignResult(outcome, content, reason=reason), failures)

    def _try_fast(self, content: bytes, header: HeaderSection, include: list[bytes],
                  domain: str, reason: str, timestamp: int | None) -> SignResult | None:
        keys = self._keys[domain]
        relaxed_header, relaxed_body = (c == b"relaxed" for c in self._canonicalize)
        try:
            fields = [signature.sign(content, header, k, include, relaxed_header, relaxed_body,
                                     timestamp) for k in keys]
        except Exception as exc:
            log.warning("DKIM: signing for %s failed: %s", domain, _describe(exc))
            return None
        selectors = tuple(k.selector.decode() for k in keys)
        return SignResult(SignOutcome.SIGNED, b"".join(fields) + content, domain, selectors,
                          reason)

    def _try(self, message: dkim.DKIM, content: bytes, domain: str,
             reason: str) -> SignResult | None:
        keys = self._keys[domain]
        include = self._include(Counter(name.lower() for name, _ in message.headers))
        try:
            fields = [message.sign(k.selector, k.domain, k.material,
                                   signature_algorithm=k.algorithm,
                                   canonicalize=self._canonicalize, include_headers=include)
                      for k in keys]
        except Exception as exc:
            log.warning("DKIM: signing for %s failed: %s", domain, _describe(exc))
            return None
        selectors = tuple(k.selector.decode() for k in keys)
        return SignResult(SignOutcome.SIGNED, b"".join(fields) + content, domain, selectors,
                          reason)

    def _include(self, present: Counter[bytes]) -> list[bytes]:
        """h=: each signed field as often as it occurs; oversigned ones once more.

        dkimpy (like every verifier) takes repeated names from the bottom up, so
        the extra entry stands for a field that is not there: adding one later
        breaks the signature (RFC 6376 5.4.2, 8.15).
        """
        names = list(dict.fromkeys([*self._signed, *self._oversigned]))
        include = [name for name in names
                   for _ in range(present[name] + (name in self._oversigned))]
        if b"from" not in include:
            include.append(b"from")  # dkimpy insists; a missing From: is signed as absent
        return include

    def _done(self, result: SignResult, failures: int) -> SignResult:
        self.counters.count(result.outcome, failures)
        return result


def _active_keys(config: DkimConfig) -> dict[str, tuple[SigningKey, ...]]:
    keys: dict[str, list[SigningKey]] = {}
    for key in config.keys:
        if not key.active:
            continue
        if key.private_key is None:
            raise ValueError(f"DKIM key {key.domain}/{key.selector} was not read")
        keys.setdefault(key.domain, []).append(load_key(
            key.selector.encode(), key.domain.encode(), _DKIMPY_ALGORITHMS[key.algorithm],
            key.private_key.material))
    # RSA first: its signature ends up on top (see the module docstring).
    return {d: tuple(sorted(ks, key=lambda k: k.algorithm != b"rsa-sha256"))
            for d, ks in keys.items()}


def from_domain(values: list[bytes]) -> tuple[str | None, str]:
    """The domain of the From: address (`values`: each From: field's raw value), or
    None and why there is none."""
    if not values:
        return None, "no From: header"
    if len(values) > 1:
        return None, f"{len(values)} From: headers"
    return _domain_of_from(values[0])


# An app sends with the same From: again and again: parse each distinct field once (bounded).
@functools.lru_cache(maxsize=1024)
def _domain_of_from(value: bytes) -> tuple[str | None, str]:
    text = _FOLD.sub(b"", value).decode("utf-8", errors="replace")
    addresses = [addr for _, addr in email.utils.getaddresses([text]) if "@" in addr]
    if not addresses:
        return None, "no address in From:"
    try:
        return normalize_domain(addresses[0].rpartition("@")[2]), ""
    except ValueError:
        return None, "the From: address has no usable domain"


def _lenient_from_domain(content: bytes) -> str | None:
    """The single From: address's domain as cleanup's parser reads the header (it
    takes `From :` too), or None."""
    return from_domain([f.value for f in parse(content, repair=False).fields
                        if f.key == b"from"])[0]


def _describe(exc: Exception) -> str:
    """An exception for the log: dkimpy's message errors say what is wrong with the
    message; for anything else only the type, so no key material can reach a log."""
    if isinstance(exc, (dkim.MessageFormatError, dkim.ParameterError)):
        return f"{type(exc).__name__}: {str(exc)[:200]}"
    return type(exc).__name__
