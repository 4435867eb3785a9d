"""Whether a stored copy gets tracked, and the rewrite when it does (no Postfix
counterpart; called by intake right before DKIM signing, where the cleanup stage
will call it).

Tracking applies only when all hold:
- config.yaml has a `tracking:` section (gateway.tracking.settings);
- the message's category has `tracking: true` in consent.yaml (off by default, so
  transactional mail is never tracked unless an operator says so for its category);
- the copy has exactly one recipient (tokens name one recipient; consent categories
  are stored as one copy per recipient anyway), and
- that recipient's current consent record for the category is a grant whose
  purposes include "tracking".
Otherwise the message is returned as it came, byte for byte.
"""

from __future__ import annotations

import logging

from gateway.model import Envelope, QueueId
from gateway.policy.addresses import normalize_address
from gateway.policy.stage import PolicyStage
from gateway.state.store import STATE_ERRORS, ConsentStore
from gateway.tracking.rewrite import TrackingPlan, rewrite
from gateway.tracking.settings import TrackingConfig
from gateway.tracking.token import TokenKeys

__all__ = ["TRACKING_PURPOSE", "Tracker"]

log = logging.getLogger(__name__)

TRACKING_PURPOSE = "tracking"


class Tracker:
    def __init__(self, settings: TrackingConfig, consent: ConsentStore) -> None:
        self.settings = settings
        self.keys = TokenKeys(settings.key)
        self._consent = consent

    async def plan(self, policies: PolicyStage | None, envelope: Envelope,
                   queue_id: QueueId) -> TrackingPlan | None:
        if policies is None or envelope.category is None or len(envelope.recipients) != 1:
            return None
        category = policies.policies.consent.categories.get(envelope.category)
        if category is None or not category.tracking:
            return None
        address = normalize_address(envelope.recipients[0])
        record = (await self._consent.current((address,), category.name)).get(address)
        if record is None or not record.granted or TRACKING_PURPOSE not in record.purposes:
            return None
        return TrackingPlan(self.settings.url, self.keys, queue_id, address, category.name)

    async def apply(self, policies: PolicyStage | None, envelope: Envelope,
                    queue_id: QueueId, content: bytes) -> bytes:
        """`content` tracked when the rules above allow it, else `content` itself."""
        try:
            plan = await self.plan(policies, envelope, queue_id)
        except STATE_ERRORS as exc:  # no consent answer: the safe side is no tracking
            log.warning("%s: not tracked, consent not readable now: %s", queue_id, exc)
            return content
        if plan is None:
            return content
        tracked = rewrite(content, plan)
        if tracked is not content:
            log.debug("%s: tracking added for category %s", queue_id, plan.category)
        return tracked

    def __repr__(self) -> str:
        return f"<Tracker {self.settings.url}>"
