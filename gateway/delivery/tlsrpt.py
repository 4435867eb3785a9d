"""SMTP TLS reporting (RFC 8460): counting every TLS outcome delivery reports, and once a
day sending each recipient domain that asks for them (`_smtp._tls` TXT, `rua=`) the
report of the day before.

`TlsReporter` is delivery's `OutcomeSink` (gateway.delivery.tls_policy):

- `record()` adds one to an in-memory counter keyed by (day, policy domain, policy
  type, policy text, result, MX host, receiving IP): a dict update, no I/O. Every
  `flush_interval` the counters are added to the state store (gateway.state.tls) —
  tls.db, or the shared PostgreSQL database, where every node counts into the same
  rows. Counters a failed flush could not store are kept for the next one.
- `send_due()` (after `send_after` past 00:00 UTC; `run()` tries hourly): for each
  earlier day and policy domain not yet reported, one node claims the report
  (tlsrpt_sent), builds it (tlsrpt_report.py) and sends it to each URI: `mailto:`
  as a message through the gateway's own queue, DKIM-signed with the gateway's key
  like the mail it relays; `https:` as a POST of the gzip (application/tlsrpt+gzip).
  A report no destination took is released and tried at the next run (for
  RETRY_DAYS); counts are dropped after `keep_days`.

Security: report destinations come from DNS (untrusted): only checked mailto:
addresses and https: URLs are used (tlsrpt_report.rua_uris); an https endpoint's
certificate is verified (system trust store or `delivery.ca_file`) and redirects are
not followed. A report holds domain names, MX host names and IPs, never addresses.
"""

from __future__ import annotations

import calendar
import contextlib
import logging
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import dns.asyncresolver

from gateway.clock import Clock
from gateway.delivery.mta_sts import DnsTrouble, txt_records
from gateway.delivery.settings import TlsReportsConfig
from gateway.delivery.tls_policy import TlsOutcome
from gateway.delivery.tlsrpt_report import (
    GZIP_TYPE,
    Report,
    build_report,
    mailto_address,
    report_mail,
    rua_uris,
)
from gateway.model import Client, Envelope, QueuedMessage
from gateway.state.tls import OutcomeCount, TlsStore

__all__ = ["Enqueue", "Sign", "TlsReporter", "day_of"]

log = logging.getLogger(__name__)

DAY = 86400.0
MAX_PENDING_ROWS = 100_000  # counters kept in memory while the store is away
RETRY_DAYS = 3  # a report no destination took is tried hourly this long after its day
Enqueue = Callable[[Envelope, bytes], Awaitable[QueuedMessage]]
Sign = Callable[[bytes], bytes]  # the gateway's DKIM signing of its own mail
_Key = tuple[str, str, str, tuple[str, ...], str, str, str]


def day_of(now: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(now))


def _day_start(day: str) -> float:
    return float(calendar.timegm(time.strptime(day, "%Y-%m-%d")))


class TlsReporter:
    def __init__(self, config: TlsReportsConfig, store: TlsStore, clock: Clock, *,
                 hostname: str, node: str, resolver: dns.asyncresolver.Resolver,
                 enqueue: Enqueue | None = None, sign: Sign | None = None,
                 ca_file: Path | None = None) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.hostname = hostname
        self.node = node
        self.sender = config.sender or f"tls-reports@{hostname}"
        self._resolver = resolver
        self.enqueue = enqueue
        self.sign = sign
        self._ca_file = ca_file
        self._counts: dict[_Key, int] = {}
        self._details: dict[_Key, str] = {}
        self._day = ""
        self._day_ends = 0.0
        # "day domain uri" of the latest reports handed over (for tests and the log).
        self.sent: deque[str] = deque(maxlen=1000)

    def __repr__(self) -> str:
        return (f"<TlsReporter {self.sender} pending={len(self._counts)}"
                f" sent={len(self.sent)}>")

    # -- counting (the hot path) --------------------------------------------------------------
    def record(self, outcome: TlsOutcome) -> None:
        now = self.clock.now()
        if now >= self._day_ends:
            self._day = day_of(now)
            self._day_ends = (now // DAY + 1) * DAY
        key = (self._day, outcome.policy_domain, outcome.policy_type.value,
               outcome.policy_strings, outcome.result, outcome.mx_host, outcome.receiving_ip)
        self._counts[key] = self._counts.get(key, 0) + 1
        if outcome.result != "success" and key not in self._details:
            self._details[key] = outcome.detail

    async def flush(self) -> int:
        """Add the counters to the store; return how many rows were written."""
        counts, details = self._counts, self._details
        if not counts:
            return 0
        self._counts, self._details = {}, {}
        rows = [OutcomeCount(k[0], k[1], k[2], "\n".join(k[3]), k[4], k[5], k[6], n,
                             details.get(k, "")) for k, n in counts.items()]
        try:
            await self.store.add_counts(rows)
        except Exception:
            self._merge_back(counts, details)
            raise
        return len(rows)

    def _merge_back(self, counts: dict[_Key, int], details: dict[_Key, str]) -> None:
        for key, n in counts.items():
            self._counts[key] = self._counts.get(key, 0) + n
        for key, detail in details.items():
            self._details.setdefault(key, detail)
        if len(self._counts) > MAX_PENDING_ROWS:  # the store away for long: oldest go
            for key in list(self._counts)[: len(self._counts) - MAX_PENDING_ROWS]:
                del self._counts[key]
                self._details.pop(key, None)

    # -- reports ------------------------------------------------------------------------------
    async def send_due(self, *, force: bool = False) -> list[str]:
        """Send the reports of every finished day not reported yet (after `send_after`
        past midnight UTC, or at once with `force`); return "day domain" of each sent."""
        now = self.clock.now()
        today = day_of(now)
        if not force and now < (now // DAY) * DAY + self.config.send_after:
            return []
        await self.flush()
        done: list[str] = []
        for day in await self.store.days():
            if day < today:
                done.extend(await self._send_day(day, now))
        await self.store.purge(day_of(now - self.config.keep_days * DAY))
        return done

    async def _send_day(self, day: str, now: float) -> list[str]:
        rows = await self.store.counts(day)
        claimed = await self.store.reports(day)
        by_domain: dict[str, list[OutcomeCount]] = {}
        for row in rows:
            by_domain.setdefault(row.policy_domain, []).append(row)
        done = []
        for domain in sorted(set(by_domain) - set(claimed)):
            if not await self.store.claim_report(day, domain, self.node, now):
                continue  # another node has it
            try:
                outcome = await self._send_one(day, domain, by_domain[domain], now)
            except Exception as exc:
                if now - _day_start(day) < RETRY_DAYS * DAY:
                    log.warning("TLS report %s for %s not sent (tried again later): %s",
                                day, domain, exc)
                    await self.store.release_report(day, domain)
                else:  # tried hourly for days: give up on this one
                    log.warning("TLS report %s for %s not sent, given up: %s", day, domain, exc)
                    await self.store.mark_report(day, domain, f"failed: {exc}"[:500])
                continue
            await self.store.mark_report(day, domain, outcome)
            done.append(f"{day} {domain}")
        return done

    async def _send_one(self, day: str, domain: str, rows: list[OutcomeCount], now: float
                        ) -> str:
        try:
            uris = rua_uris(await txt_records(self._resolver, f"_smtp._tls.{domain}"))
        except DnsTrouble as exc:
            raise RuntimeError(f"_smtp._tls.{domain}: {exc}") from None
        if not uris:
            return "no tlsrpt record"
        report = build_report(day, domain, rows, organization=self.config.organization
                              or self.hostname, contact=self.config.contact or self.sender,
                              submitter=self.hostname)
        results: list[str] = []
        errors: list[str] = []
        mailto = tuple(mailto_address(u) for u in uris if u.lower().startswith("mailto:"))
        if mailto:
            await self._collect(results, errors, "mailto", self._mail(report, mailto, now))
        for uri in uris:
            if uri.lower().startswith("https:"):
                await self._collect(results, errors, uri, self._post(report, uri))
        if not results:
            raise RuntimeError("; ".join(errors))
        log.info("TLS report %s for %s sent: %s", day, domain, " ".join(results))
        self.sent.extend(f"{day} {domain} {r}" for r in results)
        return "sent " + " ".join(results) + ("" if not errors else " failed " + "; ".join(errors))

    @staticmethod
    async def _collect(results: list[str], errors: list[str], what: str,
                       sending: Awaitable[str]) -> None:
        try:
            results.append(await sending)
        except Exception as exc:
            errors.append(f"{what}: {exc}")

    async def _mail(self, report: Report, recipients: tuple[str, ...], now: float) -> str:
        if self.enqueue is None:
            raise RuntimeError("no queue to send mail reports through")
        msg = report_mail(report, sender=self.sender, recipients=recipients,
                          submitter=self.hostname, now=now)
        content = msg.as_bytes()
        if self.sign is not None:
            content = self.sign(content)
        # RFC 8460 section 5.3: a report is delivered despite TLS failures (the very
        # thing it may be reporting): the recipient domain's MTA-STS and DANE are set
        # aside for it, as RFC 8689's "TLS-Required: No" asks.
        envelope = Envelope(mail_from=self.sender, recipients=recipients,
                            client=Client("tlsrpt", "127.0.0.1"), received_at=now,
                            message_id=str(msg["Message-ID"]), tls_optional=True)
        queued = await self.enqueue(envelope, content)
        return f"mailto:{','.join(recipients)} (queue id {queued.id})"

    async def _post(self, report: Report, uri: str) -> str:
        timeout = aiohttp.ClientTimeout(total=self.config.http_timeout)
        async with aiohttp.ClientSession(timeout=timeout) as session, session.post(
                uri, data=report.gzipped, headers={"Content-Type": GZIP_TYPE},
                ssl=self._ssl_context(), allow_redirects=False) as response:
            if not 200 <= response.status < 300:
                raise RuntimeError(f"HTTP status {response.status}")
        return uri

    def _ssl_context(self) -> ssl.SSLContext:
        cafile = str(self._ca_file) if self._ca_file is not None else None
        return ssl.create_default_context(cafile=cafile)

    # -- the background jobs ------------------------------------------------------------------
    async def run(self) -> None:
        """Flush every `flush_interval`; look for due reports about hourly. Until cancelled."""
        interval = self.config.flush_interval
        next_check = 0.0
        while True:
            await self.clock.sleep(interval)
            try:
                await self.flush()
                if self.clock.now() >= next_check:
                    next_check = self.clock.now() + min(3600.0, DAY)
                    await self.send_due()
            except Exception:  # the store or DNS away: the next round tries again
                log.exception("TLS reports: background job failed")

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.flush()
        if self._counts:
            log.warning("TLS reports: %d counters could not be stored", len(self._counts))
