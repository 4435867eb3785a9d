"""RFC 3834 automatic responses: vacation, out-of-office, auto-responders. Not bounces.

Recognised by, in order of trust:
- `Auto-Submitted: auto-replied` (RFC 3834 §5; any value but `no` when the
  subject also says it is an automatic reply);
- the de facto headers: `X-Autoreply`, `X-Autorespond`, `X-Autoresponder`,
  `Precedence: auto_reply`, and Exchange's `X-MS-Exchange-Inbox-Rules-Loop`
  with an automatic-reply subject;
- the subject prefixes MUAs use: "Auto:", "Automatic reply:", "Out of
  Office", "Autoreply", "Abwesenheitsnotiz", "Réponse automatique", …

This detector runs after every bounce detector: DSNs and Exim bounces carry
`Auto-Submitted: auto-replied` too. The recipient reported is the
auto-reply's author (the person who is away), from `From:`.

Security: reads untrusted headers only (the subject capped at 200 characters).
"""

from __future__ import annotations

import re
from email.message import EmailMessage

from gateway.bounces.detectors.base import Detector, clean_address, header
from gateway.bounces.report import BounceRecipient, Kind
from gateway.bounces.verdicts import Action, Reason

__all__ = ["AUTO_REPLY_SUBJECT", "AutoReply"]

AUTO_REPLY_SUBJECT = re.compile(
    r"^(?:auto(?:matic)?[ -]?(?:reply|response|antwort)|auto:|autoreply|out of (?:the )?office"
    r"|on vacation|away from (?:the office|my desk)|abwesenheit|r[ée]ponse automatique"
    r"|respuesta autom[aá]tica|risposta automatica|fuera de la oficina|i am (?:away|out))",
    re.IGNORECASE)
_AUTO_HEADERS = ("X-Autoreply", "X-Autorespond", "X-Autoresponder", "X-Vacation")


class AutoReply(Detector):
    name = "autoreply"

    def detect(self, msg: EmailMessage) -> list[BounceRecipient] | None:
        if not self._is_auto_reply(msg):
            return None
        author = clean_address(header(msg, "From"))
        return [BounceRecipient(author, Kind.AUTO_REPLY, None, Reason.VACATION.value,
                                action=Action.NONE.value)]

    @staticmethod
    def _is_auto_reply(msg: EmailMessage) -> bool:
        auto = header(msg, "Auto-Submitted").lower()
        if auto.startswith("auto-replied"):
            return True
        subject = AUTO_REPLY_SUBJECT.search(header(msg, "Subject")[:200].lstrip()) is not None
        if auto and not auto.startswith("no"):
            return subject  # auto-generated: a notification unless it says it is a reply
        if any(header(msg, h) for h in _AUTO_HEADERS):
            return True
        if header(msg, "Precedence").lower() == "auto_reply":
            return True
        return subject and bool(header(msg, "X-MS-Exchange-Inbox-Rules-Loop")
                                or header(msg, "X-Auto-Response-Suppress")
                                or header(msg, "In-Reply-To"))
