"""The whole validated configuration: one frozen dataclass per section (`daemon.config.load` builds it)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from daemon.config.kafka import KafkaConfig
from daemon.config.paper import PaperConfig
from daemon.config.sections import CacheConfig, DaemonConfig, DetectorConfig, RiskConfig, RouterConfig
from daemon.config.security import OperatorConfig, SecurityConfig, no_operators
from daemon.config.topics import TopicsConfig
from daemon.config.users import UserConfig, no_users
from daemon.config.venues import VenueConfig, default_venues


@dataclass(frozen=True, slots=True)
class Config:
    """The whole validated configuration; `venues` holds every known venue, enabled or not."""

    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    kafka: KafkaConfig = field(default_factory=KafkaConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    risk: RiskConfig = field(default_factory=RiskConfig)
    router: RouterConfig = field(default_factory=RouterConfig)
    paper: PaperConfig = field(default_factory=PaperConfig)
    topics: TopicsConfig = field(default_factory=TopicsConfig)
    venues: Mapping[str, VenueConfig] = field(default_factory=default_venues)
    users: Mapping[str, UserConfig] = field(default_factory=no_users)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    operators: Mapping[str, OperatorConfig] = field(default_factory=no_operators)

    def topic(self, name: str) -> str:
        """Return the full topic name, e.g. `topic("opportunities")` → `smartroute.opportunities`."""
        return self.kafka.topic(name)

    def enabled_venues(self) -> Mapping[str, VenueConfig]:
        """Return the enabled venues by id, in registry order."""
        return MappingProxyType({venue: v for venue, v in self.venues.items() if v.enabled})
