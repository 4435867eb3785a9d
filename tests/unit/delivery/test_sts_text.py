"""MTA-STS texts parsed strictly: the TXT record (RFC 8461 section 3.1) and the policy
file (section 3.2)."""

from __future__ import annotations

import pytest

from gateway.delivery.sts_text import PolicyError, parse_policy, sts_record_id
from gateway.delivery.tls_policy import StsMode

GOOD = "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\n" \
       "max_age: 604800\r\n"


@pytest.mark.parametrize(("records", "expected"), [
    (["v=STSv1; id=20160831085700Z;"], "20160831085700Z"),
    (["v=STSv1;id=abc"], "abc"),
    (["v=STSv1; id=abc; ext_1=x.y"], "abc"),
    (["v=spf1 -all", "v=STSv1; id=abc"], "abc"),  # other TXT records are not ours
    (["v=STSv1; id=a", "v=STSv1; id=b"], None),  # two: none at all
    (["v=STSv1"], None),  # no id
    (["v=STSv1; id="], None),
    (["v=STSv1; id=" + "a" * 33], None),  # at most 32
    (["v=STSv1; id=ab-c"], None),  # letters and digits only
    (["v=STSv1; id=a; id=b"], None),
    (["id=abc; v=STSv1"], None),  # the version first
    (["v=STSv2; id=abc"], None),
    (["v=STSv1; id=abc; bad ext"], None),
    (["v=STSv1; id=abc; x=a b"], None),
    ([], None),
])
def test_txt_records(records: list[str], expected: str | None) -> None:
    assert sts_record_id(records) == expected


def test_a_good_policy() -> None:
    parsed = parse_policy(GOOD)
    assert parsed.mode is StsMode.ENFORCE and parsed.max_age == 604800
    assert parsed.mx == ("mail.example.com", "*.example.net")
    assert parsed.lines[0] == "version: STSv1" and len(parsed.lines) == 5
    # LF lines, no final line end, unknown keys, any order, spaces around the colon.
    lf = parse_policy("mode:testing\nfuture_key: whatever\nmx : MX.Example.com.\n"
                      "max_age: 0\nversion: STSv1")
    assert (lf.mode, lf.mx, lf.max_age) == (StsMode.TESTING, ("mx.example.com",), 0)
    assert parse_policy("version: STSv1\nmode: none\nmax_age: 86400\n").mx == ()


@pytest.mark.parametrize(("text", "why"), [
    (GOOD.replace("STSv1", "STSv2"), "is not STSv1"),
    (GOOD.replace("mode: enforce\r\n", ""), "no 'mode' field"),
    (GOOD.replace("enforce", "strict"), "is not enforce, testing or none"),
    (GOOD.replace("604800", "31557601"), "more than 31557600"),
    (GOOD.replace("604800", "-1"), "is not a number of seconds"),
    (GOOD.replace("604800", "1d"), "is not a number of seconds"),
    (GOOD.replace("max_age: 604800\r\n", ""), "no 'max_age' field"),
    (GOOD + "mode: testing\r\n", "'mode' is given twice"),
    ("version: STSv1\nmode: enforce\nmax_age: 10\n", "mode enforce without any 'mx'"),
    (GOOD + "this line has no colon\r\n", "is not 'key: value'"),
    (GOOD.replace("*.example.net", "mail.*.example.net"), "is not an MX host pattern"),
    (GOOD.replace("*.example.net", "*.net"), "is not an MX host pattern"),
    (GOOD.replace("*.example.net", "bad_host.example.net"), "is not an MX host pattern"),
    ("<html><body>Not found</body></html>", "is not 'key: value'"),
])
def test_bad_policies_are_refused_with_the_reason(text: str, why: str) -> None:
    with pytest.raises(PolicyError, match=why):
        parse_policy(text)
