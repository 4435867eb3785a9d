"""Building one SMTP TLS report (RFC 8460): the JSON document, its gzip file and name,
and the mail that carries it; and reading a domain's `_smtp._tls` TXT record.

Pure functions; gateway.delivery.tlsrpt decides when and sends. Postfix and KumoMTA
have no counterpart built in (KumoMTA leaves reports to Lua).

- JSON (section 4): one `policies[]` entry per (policy type, policy text) of the
  day, with its success and failure session counts and one `failure-details[]`
  entry per (result type, MX host, receiving IP).
- File name (section 5.1): `submitter!policy-domain!begin!end!id.json.gz`.
- Mail (section 5.3): multipart/report; report-type="tlsrpt", a short text part
  and the gzip as an application/tlsrpt+gzip attachment; TLS-Report-Domain and
  TLS-Report-Submitter fields; Subject `Report Domain: … Submitter: … Report-ID: <…>`.

Security: the TXT record is untrusted; only `v=TLSRPTv1` records and their
`mailto:`/`https:` URIs are kept, each checked for its form. Nothing from the
network goes into the mail header but those checked domain names and addresses.
"""

from __future__ import annotations

import calendar
import gzip
import json
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from urllib.parse import unquote, urlsplit

from gateway.state.tls import OutcomeCount

__all__ = ["GZIP_TYPE", "Report", "build_report", "mailto_address", "report_mail", "rua_uris"]

GZIP_TYPE = "application/tlsrpt+gzip"
_ADDRESS = re.compile(r"[^@\s<>\",;]+@[A-Za-z0-9.-]+")
_URI_FIELD = re.compile(r"[^,;\s]+")


@dataclass(frozen=True)
class Report:
    day: str
    policy_domain: str
    report_id: str
    document: dict[str, object]
    begin: int  # seconds since the epoch: the day's start
    end: int  # its last second

    @property
    def json(self) -> bytes:
        return json.dumps(self.document, separators=(",", ":")).encode("utf-8")

    @property
    def gzipped(self) -> bytes:
        # mtime=0: the same report always compresses to the same bytes.
        return gzip.compress(self.json, mtime=0)

    def file_name(self, submitter: str) -> str:
        unique = self.report_id.split("@", 1)[0].rsplit(".", 1)[-1]
        return f"{submitter}!{self.policy_domain}!{self.begin}!{self.end}!{unique}.json.gz"


def rua_uris(records: list[str]) -> tuple[str, ...]:
    """The report destinations of a domain's `_smtp._tls` TXT records: () unless exactly
    one record starts with v=TLSRPTv1 (section 3) and names a mailto: or https: URI."""
    ours = [r for r in records if r.startswith("v=TLSRPTv1")]
    if len(ours) != 1:
        return ()
    fields = [f.strip(" \t") for f in ours[0].split(";")]
    if fields[0] != "v=TLSRPTv1":
        return ()
    uris: list[str] = []
    for field in fields[1:]:
        name, _, value = field.partition("=")
        if name.strip() == "rua":
            uris.extend(u for u in (v.strip() for v in value.split(",")) if _usable(u))
    return tuple(uris)


def _usable(uri: str) -> bool:
    if not _URI_FIELD.fullmatch(uri):
        return False
    parts = urlsplit(uri)
    if parts.scheme.lower() == "mailto":
        return _ADDRESS.fullmatch(unquote(parts.path)) is not None
    return parts.scheme.lower() == "https" and bool(parts.hostname)


def mailto_address(uri: str) -> str:
    return unquote(urlsplit(uri).path)


def build_report(day: str, policy_domain: str, rows: Iterable[OutcomeCount], *,
                 organization: str, contact: str, submitter: str) -> Report:
    begin = calendar.timegm(datetime.strptime(day, "%Y-%m-%d").timetuple())
    report_id = f"{day}.{policy_domain}.{secrets.token_hex(8)}@{submitter}"
    groups: dict[tuple[str, str], list[OutcomeCount]] = {}
    for row in rows:
        groups.setdefault((row.policy_type, row.policy_strings), []).append(row)
    document: dict[str, object] = {
        "organization-name": organization,
        "date-range": {"start-datetime": f"{day}T00:00:00Z",
                       "end-datetime": f"{day}T23:59:59Z"},
        "contact-info": contact,
        "report-id": report_id,
        "policies": [_policy_entry(policy_domain, kind, strings, group)
                     for (kind, strings), group in sorted(groups.items())],
    }
    return Report(day, policy_domain, report_id, document, begin, begin + 86399)


def _policy_entry(domain: str, kind: str, strings: str, rows: list[OutcomeCount]
                  ) -> dict[str, object]:
    policy: dict[str, object] = {"policy-type": kind, "policy-domain": domain}
    lines = [line for line in strings.split("\n") if line]
    if lines:
        policy["policy-string"] = lines
    mx = _mx_hosts(kind, lines, rows)
    if mx:
        policy["mx-host"] = mx
    failures = [r for r in rows if r.result != "success"]
    entry: dict[str, object] = {
        "policy": policy,
        "summary": {
            "total-successful-session-count": sum(r.count for r in rows
                                                  if r.result == "success"),
            "total-failure-session-count": sum(r.count for r in failures),
        },
    }
    if failures:
        entry["failure-details"] = [_failure(r) for r in sorted(failures, key=lambda r: r.key)]
    return entry


def _mx_hosts(kind: str, lines: list[str], rows: list[OutcomeCount]) -> list[str]:
    if kind == "sts":  # the policy's own patterns (section 4.4, mx-host)
        return [line.partition(":")[2].strip() for line in lines
                if line.partition(":")[0].strip() == "mx"]
    return sorted({r.mx_host for r in rows if r.mx_host})


def _failure(row: OutcomeCount) -> dict[str, object]:
    out: dict[str, object] = {"result-type": row.result, "failed-session-count": row.count}
    if row.mx_host:
        out["receiving-mx-hostname"] = row.mx_host
    if row.receiving_ip:
        out["receiving-ip"] = row.receiving_ip
    if row.detail:
        out["failure-reason-code"] = row.detail[:200]
    return out


def report_mail(report: Report, *, sender: str, recipients: tuple[str, ...], submitter: str,
                now: float) -> EmailMessage:
    """The report as a message (section 5.3), ready to sign and queue."""
    msg = EmailMessage(policy=SMTP)
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg["Subject"] = (f"Report Domain: {report.policy_domain} Submitter: {submitter} "
                      f"Report-ID: <{report.report_id}>")
    msg["Date"] = format_datetime(datetime.fromtimestamp(now, UTC))
    msg["Message-ID"] = f"<{secrets.token_hex(16)}@{submitter}>"
    msg["TLS-Report-Domain"] = report.policy_domain
    msg["TLS-Report-Submitter"] = submitter
    msg["Auto-Submitted"] = "auto-generated"
    msg["TLS-Required"] = "No"  # RFC 8689 section 5; see TlsReporter._mail
    msg.set_content(f"This is an aggregate TLS report from {submitter} for "
                    f"{report.policy_domain}, {report.day} (UTC), as RFC 8460 describes.\n")
    msg.make_mixed()
    msg.replace_header("Content-Type", 'multipart/report; report-type="tlsrpt"')
    attachment = EmailMessage(policy=SMTP)
    attachment.set_content(report.gzipped, maintype="application", subtype="tlsrpt+gzip",
                           disposition="attachment", filename=report.file_name(submitter))
    attachment.set_param("name", report.file_name(submitter))  # as the RFC's example has it
    msg.attach(attachment)
    return msg
