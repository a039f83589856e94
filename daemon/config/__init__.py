"""The configuration: a TOML file plus SMARTROUTE_* overrides, validated into one frozen `Config`.

    cfg = load_config("/etc/smartroute/config.toml")   # ConfigError naming the key (and variable) at fault
    view = redacted_view(cfg)                          # the effective config, secrets redacted

One module per section, each holding its dataclass and the reader that validates its table:

    sections.py   [daemon] [cache] [detector] [risk] [router]
    kafka.py      [kafka] (TLS, SASL; the password from the environment or a credential file)
    topics.py     [topics] (partitions, replication, retention of the contract's topics)
    venues.py     [venues.<id>] (endpoints, fees, testnets, depth)
    users.py      [users.<id>] (routing preferences)
    paper.py      [paper.balances.<venue>] (the accounts paper trading starts from)
    model.py      Config, the whole
    load.py       the file, the SMARTROUTE_* overrides, and assembling the sections
    view.py       the printed view, generated from Config's own fields
    table.py      typed, validating reads of one TOML table
    secret.py     Secret, and reading one from the environment or $CREDENTIALS_DIRECTORY
"""

from __future__ import annotations

from daemon.config.kafka import KafkaConfig
from daemon.config.load import build_config, load_config
from daemon.config.model import Config
from daemon.config.paper import PaperConfig
from daemon.config.secret import Secret, load_secret
from daemon.config.sections import CacheConfig, DaemonConfig, DetectorConfig, RiskConfig, RouterConfig
from daemon.config.topics import TopicsConfig
from daemon.config.users import UserConfig
from daemon.config.venues import VenueConfig
from daemon.config.view import redacted_view
from daemon.errors import ConfigError

__all__ = [
    "CacheConfig",
    "Config",
    "ConfigError",
    "DaemonConfig",
    "DetectorConfig",
    "KafkaConfig",
    "PaperConfig",
    "RiskConfig",
    "RouterConfig",
    "Secret",
    "TopicsConfig",
    "UserConfig",
    "VenueConfig",
    "build_config",
    "load_config",
    "load_secret",
    "redacted_view",
]
