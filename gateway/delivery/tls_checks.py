"""What a TLS handshake tells delivery: the failure's RFC 8460 result type, the reason in
words, and the certificate chain the server sent (for DANE, dane.py).

Postfix counterpart: `tls/tls_verify.c`. Pure helpers for smtp_client.py.
"""

from __future__ import annotations

import ssl

__all__ = ["peer_chain", "tls_result", "why_tls_failed"]

_ENCODING_DER = 2  # _ssl.ENCODING_DER, for the private chain's Certificate.public_bytes()

# OpenSSL X509_V_ERR_* codes → RFC 8460 result types.
_VERIFY_RESULTS = {
    10: "certificate-expired",  # CERT_HAS_EXPIRED
    9: "certificate-expired",  # CERT_NOT_YET_VALID: the report has no better word
    62: "certificate-host-mismatch",  # HOSTNAME_MISMATCH
    64: "certificate-host-mismatch",  # IP_ADDRESS_MISMATCH
    2: "certificate-not-trusted",  # UNABLE_TO_GET_ISSUER_CERT
    7: "certificate-not-trusted",  # CERT_SIGNATURE_FAILURE: a look-alike issuer
    18: "certificate-not-trusted",  # DEPTH_ZERO_SELF_SIGNED_CERT
    19: "certificate-not-trusted",  # SELF_SIGNED_CERT_IN_CHAIN
    20: "certificate-not-trusted",  # UNABLE_TO_GET_ISSUER_CERT_LOCALLY
    21: "certificate-not-trusted",  # UNABLE_TO_VERIFY_LEAF_SIGNATURE
}


def tls_result(exc: BaseException) -> str:
    """The RFC 8460 result type for a failed handshake."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return _VERIFY_RESULTS.get(exc.verify_code, "validation-failure")
    return "validation-failure"


def peer_chain(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> list[bytes]:
    """The certificates the server sent, DER, leaf first.

    Python 3.13 has SSLObject.get_unverified_chain(); 3.11 and 3.12 have the same method
    only on the private `_sslobj`, which is used when there. Without either, only the leaf
    is known (DANE-TA then cannot match; dane.py says so).
    """
    public = getattr(ssl_object, "get_unverified_chain", None)
    private = getattr(getattr(ssl_object, "_sslobj", None), "get_unverified_chain", None)
    getter = public or private
    if getter is not None:
        chain = getter() or []
        return [c if isinstance(c, bytes) else c.public_bytes(_ENCODING_DER) for c in chain]
    leaf = ssl_object.getpeercert(binary_form=True)
    return [leaf] if leaf else []


def why_tls_failed(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return f"certificate verify failed: {exc.verify_message}"
    return getattr(exc, "reason", None) or str(exc) or type(exc).__name__
