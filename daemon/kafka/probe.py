"""The broker probe behind readiness: one long-lived metadata client (`daemon.health.BrokerWatch` runs it)."""

from __future__ import annotations

from aiokafka.client import AIOKafkaClient

from daemon.config import KafkaConfig
from daemon.kafka.settings import client_options


class KafkaMetadataProbe:
    """Ask the cluster for its metadata over one long-lived aiokafka client (TLS and SASL as configured)."""

    def __init__(self, cfg: KafkaConfig) -> None:
        self._cfg = cfg
        self._client: AIOKafkaClient | None = None

    async def check(self) -> None:
        """Bootstrap on first use (and after a failed bootstrap), then fetch the cluster's metadata."""
        if self._client is None:
            client = AIOKafkaClient(**client_options(self._cfg))
            try:
                await client.bootstrap()
            except BaseException:
                await client.close()
                raise
            self._client = client
        await self._client.fetch_all_metadata()

    async def close(self) -> None:
        """Close the client; idempotent."""
        client, self._client = self._client, None
        if client is not None:
            await client.close()
