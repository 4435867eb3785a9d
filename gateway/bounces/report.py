"""What a bounce, complaint or auto-reply says about each recipient.

KumoMTA counterpart: `bounce-classify`'s classification result. These are the
frozen values that `classify.parse()` returns and that the suppression store
(another stage) will read; nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.bounces.verp import VerpRef

__all__ = ["BounceRecipient", "BounceReport", "Kind"]


class Kind(StrEnum):
    HARD = "hard"  # permanent: the address (or the message) will never be accepted
    SOFT = "soft"  # temporary: delayed, or a 4.x.x failure
    COMPLAINT = "complaint"  # an ARF feedback report: the recipient objected
    AUTO_REPLY = "auto_reply"  # RFC 3834 vacation / out of office: not a bounce

    @property
    def is_bounce(self) -> bool:
        """True for what the JSON reports as `"bounce": true` (complaints included)."""
        return self is not Kind.AUTO_REPLY


@dataclass(frozen=True)
class BounceRecipient:
    """One recipient's line in a report.

    `status` is the RFC 3463 enhanced code, as reported or inferred from the
    text (None when neither says); `reason` is a name of the vocabulary
    (gateway.bounces.verdicts.Reason) and `kind` follows from it.
    The other fields keep what the report said, for logs and events.
    """

    address: str
    kind: Kind
    status: str | None
    reason: str
    diagnostic: str = ""  # Diagnostic-Code or the provider's sentence
    remote_mta: str = ""
    original_recipient: str = ""
    feedback_type: str = ""  # ARF only: abuse, fraud, virus, other, not-spam, …
    # What follows (gateway.bounces.verdicts.Action's value): suppress, count_soft, alert,
    # complaint, none. Not in the JSON: it follows from `kind` and `reason`.
    action: str = "alert"

    def to_json(self) -> dict[str, Any]:
        return {"address": self.address, "status": self.status,
                "kind": str(self.kind), "reason": self.reason}


@dataclass(frozen=True)
class BounceReport:
    """The parse of one message: which detector recognised it, and its recipients.

    `detector` is "" when no detector recognised the message (plain mail).
    `verp` is the verified VERP reference the report was addressed to (or that
    the embedded original carried as its return path); `forged` is true when a
    VERP address was found but its signature did not verify (ignore the report).
    """

    detector: str
    recipients: tuple[BounceRecipient, ...] = ()
    verp: VerpRef | None = None
    forged: bool = False

    @property
    def is_bounce(self) -> bool:
        return any(r.kind.is_bounce for r in self.recipients)

    def to_json(self) -> dict[str, Any]:
        """The `bounce parse --json` shape: {"bounce": bool, "recipients": [...]}."""
        return {"bounce": self.is_bounce, "recipients": [r.to_json() for r in self.recipients]}

    def __repr__(self) -> str:
        rcpts = " ".join(f"{r.address}:{r.kind}:{r.status or '-'}:{r.reason}"
                         for r in self.recipients)
        return f"<BounceReport {self.detector or 'none'} [{rcpts}]>"
