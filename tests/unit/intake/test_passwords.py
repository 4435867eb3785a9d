from __future__ import annotations

from gateway.intake.passwords import hash_password, is_valid_hash, verify_password


def test_hash_verifies_only_the_right_password() -> None:
    hashed = hash_password("s3cret pass", n=2**10)
    assert is_valid_hash(hashed)
    assert verify_password("s3cret pass", hashed)
    assert not verify_password("s3cret pas", hashed)


def test_hashes_are_salted() -> None:
    assert hash_password("x", n=2**10) != hash_password("x", n=2**10)


def test_malformed_hashes_never_verify() -> None:
    for bad in ("", "plain", "scrypt$3$8$1$AAAA$AAAA", "scrypt$16384$8$1$!!$AAAA", "md5$x"):
        assert not is_valid_hash(bad)
        assert not verify_password("x", bad)
