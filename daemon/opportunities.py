"""The open opportunities as the opportunities topic tells them, for a router without a detector.

In the `route` role (and whenever the detector runs in another process) the router service
follows `smartroute.opportunities` (`daemon.kafka.TopicFollower`, no consumer group) into an
`OpportunityBook`, starting `LOOKBACK_MS` back: every event that can still be open was written
since then, as an event expires within the detector's `max_quote_age_ms` of being detected.

A desk may send its request as soon as it read `opened`, possibly before the router's follower
fetched that event, and a `closed` event may be on its way too. So an id is looked up only once
the follower has applied everything the topic held when the request was judged (one ListOffsets
round trip, bounded by `SYNC_TIMEOUT_S`); an id that cannot be confirmed in time is not open.
"""

from __future__ import annotations

import structlog

from daemon.errors import KafkaUnavailable
from daemon.kafka import TopicFollower
from router.opportunities import OpenOpportunity, OpportunityBook

log = structlog.get_logger(__name__)

LOOKBACK_MS = 60_000
SYNC_TIMEOUT_S = 2.0


class FollowedOpportunities:
    """`router.opportunities.OpenOpportunities` over the book the router service fills from Kafka."""

    def __init__(self) -> None:
        self.book = OpportunityBook()
        self.follower: TopicFollower | None = None  # set by the router service while it follows the topic

    async def find(self, opportunity_id: str) -> OpenOpportunity | None:
        """Return the opportunity if it is open once every event written so far has been applied."""
        if self.follower is None:
            return None  # the service is not following the topic: nothing can be confirmed
        try:
            await self.follower.sync(SYNC_TIMEOUT_S)
        except (KafkaUnavailable, TimeoutError) as exc:
            log.warning("opportunities_not_synced", opportunity_id=opportunity_id, error=str(exc))
            return None
        return self.book.get(opportunity_id)
