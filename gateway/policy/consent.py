"""A message's category, and consent for categories that need it (legal basis `consent`).

The category comes from the app's header (default X-Gateway-Category), else
from the first matching rule of consent.yaml, else the default
(`transactional`). A recipient of a consent-requiring category needs a current
grant: the latest consent record for (address, category) says granted.

For such messages without a List-Unsubscribe field, one is added (RFC 2369)
with `List-Unsubscribe-Post: List-Unsubscribe=One-Click` (RFC 8058), pointing
to the configured unsubscribe URL with a signed token (unsubscribe_token.py).

Security: reads untrusted message headers (field names and values of the
header section only, unfolded, decoded leniently); a header value only selects
among the operator's declared categories — an unknown value is ignored.
"""

from __future__ import annotations

from gateway.core.headers import HeaderSection
from gateway.policy import ACCEPT, MessageRecipient, Verdict
from gateway.policy.addresses import domain_of, normalize_address
from gateway.policy.rules_file import CategoryRule, ConsentSettings
from gateway.state.store import ConsentStore

__all__ = ["ConsentPolicy", "HeaderSection", "classify", "list_unsubscribe_fields"]


def classify(settings: ConsentSettings, header: HeaderSection, mail_from: str
             ) -> tuple[str, str]:
    """(category, how it was chosen: "header", "rule:<name>" or "default")."""
    value = header.get(settings.header.lower())
    if value is not None and value.strip().lower() in settings.categories:
        return value.strip().lower(), "header"
    sender = normalize_address(mail_from)
    for rule in settings.rules:
        if _matches(rule, header, sender):
            return rule.category, f"rule:{rule.name}"
    return settings.default, "default"


def _matches(rule: CategoryRule, header: HeaderSection, sender: str) -> bool:
    if rule.senders and sender not in rule.senders:
        return False
    if rule.sender_domains and domain_of(sender) not in rule.sender_domains:
        return False
    if (rule.list_unsubscribe is not None
            and header.has("list-unsubscribe") != rule.list_unsubscribe):
        return False
    if rule.precedence_bulk is not None:
        bulk = (header.get("precedence") or "").strip().lower() == "bulk"
        if bulk != rule.precedence_bulk:
            return False
    if rule.header is not None:
        value = header.get(rule.header)
        if value is None:
            return False
        if rule.header_pattern is not None and not rule.header_pattern.search(value):
            return False
    return True


def list_unsubscribe_fields(url: str) -> bytes:
    return (f"List-Unsubscribe: <{url}>\r\n"
            "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n").encode("ascii")


class ConsentPolicy:
    """DATA: a consent-requiring category needs the recipient's current grant."""

    name = "consent"

    def __init__(self, settings: ConsentSettings, store: ConsentStore) -> None:
        self._settings = settings
        self._store = store

    async def check(self, request: MessageRecipient) -> Verdict:
        category = self._settings.categories.get(request.category)
        if category is None or not category.requires_consent:
            return ACCEPT
        address = normalize_address(request.recipient)
        record = (await self._store.current((address,), category.name)).get(address)
        if record is None:
            return Verdict.reject(f"No consent recorded for {category.name} mail",
                                  f"consent:{category.name}:none")
        if not record.granted:
            return Verdict.reject(f"Consent for {category.name} mail was withdrawn",
                                  f"consent:{category.name}:withdrawn")
        return ACCEPT
