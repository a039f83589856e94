"""The daily loss limit: halt trading when the UTC day's realized PnL falls below -max_daily_loss.

After every fill (`RiskGate.record_fill`), `LossGuard.after_fills` reads the
realized PnL of the current UTC day (`router.positions`, by the injected wall
clock) and, when it is below the day's floor, halts trading through the kill
switch (issued_by "smartroute-risk", the reason stating the figures). The halt is
the kill switch's own: it survives restarts and lasts until an operator resumes.

The floor is `-max_daily_loss`. A resume on a day already past it does not
re-halt at the next fill: the operator has seen the loss, so for the rest of
that UTC day the floor becomes the PnL at the resume minus `max_daily_loss`
(trading halts again once the day loses another `max_daily_loss`). That
acknowledgement is stored in the ledger (flag "loss_acknowledged"), so it
survives a restart; at UTC midnight the floor is `-max_daily_loss` again.

After positions are rebuilt at start, the guard runs once: a day already below
its floor with no halt in force (a crash between a fill and its halt) halts then.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterable
from decimal import Decimal, localcontext
from typing import Final

import orjson
import structlog
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from connectors.types import decimal_text
from router.kill_switch import KillSwitch
from router.ledger import Ledger
from router.metrics import HALTED, LOSS_HALTS
from router.positions import EXACT, PositionBook, utc_day

__all__ = ["ACK_FLAG", "ISSUED_BY", "LossGuard", "RiskCollector", "register_risk_metrics"]

ACK_FLAG: Final = "loss_acknowledged"
ISSUED_BY: Final = "smartroute-risk"

log = structlog.get_logger(__name__)


class LossGuard:
    """Halt trading through `kill_switch` when the day's realized PnL in `positions` passes the floor."""

    def __init__(
        self,
        positions: PositionBook,
        kill_switch: KillSwitch,
        ledger: Ledger,
        max_daily_loss: Decimal,
        *,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        """Guard `positions` with `max_daily_loss` (> 0, valuation currency); `clock_ns` is the wall clock."""
        if not isinstance(max_daily_loss, Decimal) or not max_daily_loss.is_finite() or max_daily_loss <= 0:
            raise ValueError(f"max_daily_loss must be a finite Decimal > 0, got {max_daily_loss!r}")
        self.positions = positions
        self.max_daily_loss = max_daily_loss
        self._kill_switch = kill_switch
        self._ledger = ledger
        self._clock_ns = clock_ns
        self._acknowledged = _load_ack(ledger.get_flag(ACK_FLAG))
        kill_switch.on_resume(self._on_resume)

    def today(self) -> dt.date:
        """Return the current UTC day by the guard's clock."""
        return utc_day(self._clock_ns())

    def floor(self, day: dt.date) -> Decimal:
        """Return the PnL below which trading halts on `day`."""
        floor = -self.max_daily_loss
        if self._acknowledged is not None and self._acknowledged[0] == day:
            return min(floor, self._acknowledged[1])
        return floor

    def after_fills(self) -> None:
        """Halt trading if today's realized PnL is below today's floor and trading is not halted."""
        day = self.today()
        pnl, floor = self.positions.realized_on(day), self.floor(day)
        if pnl >= floor or self._kill_switch.halted:
            return
        currency = self.positions.currency
        reason = (
            f"daily loss limit: realized PnL on {day.isoformat()} (UTC) is {decimal_text(pnl)} {currency}, "
            f"below {decimal_text(floor)} (max_daily_loss {decimal_text(self.max_daily_loss)})"
        )
        self._kill_switch.halt(reason, ISSUED_BY)
        HALTED.set(1)
        LOSS_HALTS.inc()
        log.error("loss_limit_halt", day=day.isoformat(), pnl=decimal_text(pnl), floor=decimal_text(floor))

    def _on_resume(self) -> None:
        """After an operator's resume, allow another `max_daily_loss` of loss today before halting again."""
        day = self.today()
        pnl = self.positions.realized_on(day)
        if pnl >= self.floor(day):
            return
        with localcontext(EXACT):
            floor = pnl - self.max_daily_loss
        self._acknowledged = (day, floor)
        self._ledger.set_flag(
            ACK_FLAG, orjson.dumps({"v": 1, "day": day.isoformat(), "floor": decimal_text(floor)})
        )
        log.warning(
            "loss_limit_acknowledged", day=day.isoformat(), pnl=decimal_text(pnl), floor=decimal_text(floor)
        )

    def snapshot(self) -> dict[str, object]:
        """Return today's PnL, the limit and today's floor (for /status)."""
        day = self.today()
        return {
            "day": day.isoformat(),
            "realized_pnl_today": decimal_text(self.positions.realized_on(day)),
            "max_daily_loss": decimal_text(self.max_daily_loss),
            "halt_below": decimal_text(self.floor(day)),
        }


class RiskCollector(Collector):
    """Expose net positions, gross exposure and today's realized PnL at scrape time."""

    def __init__(self, positions: PositionBook, loss: LossGuard | None) -> None:
        self.positions = positions
        self.loss = loss

    def collect(self) -> Iterable[Metric]:
        """Yield positions by asset and venue, the gross exposure, today's PnL and the loss limit."""
        book = self.positions
        position = GaugeMetricFamily(
            "smartroute_position",
            "Net position in an asset on a venue from the router's fills (bought - sold - fees).",
            labels=["asset", "venue"],
        )
        for asset, venues in book.positions().items():
            for venue, net in sorted(venues.items()):
                position.add_metric([asset, venue], float(net))
        yield position
        gross, _ = book.gross_exposure()
        yield GaugeMetricFamily(
            "smartroute_gross_exposure",
            "Sum over assets other than the valuation currency of |total net position| x price, "
            "in the valuation currency.",
            float(gross),
        )
        if self.loss is not None:
            today = self.loss.today()
            yield GaugeMetricFamily(
                "smartroute_realized_pnl_today",
                "Realized PnL of the current UTC day (average cost, fees included), valuation currency.",
                float(book.realized_on(today)),
            )
            yield GaugeMetricFamily(
                "smartroute_loss_halt_floor",
                "Today's realized PnL below which trading halts: -max_daily_loss, lower after a resume "
                "on a day already past it.",
                float(self.loss.floor(today)),
            )


def register_risk_metrics(
    positions: PositionBook, loss: LossGuard | None, registry: CollectorRegistry = REGISTRY
) -> RiskCollector:
    """Register a collector for `positions` and `loss`; return it so the caller can unregister it."""
    collector = RiskCollector(positions, loss)
    registry.register(collector)
    return collector


def _load_ack(stored: bytes | None) -> tuple[dt.date, Decimal] | None:
    """Read the stored acknowledgement; an unreadable one is ignored (the stricter floor applies)."""
    if stored is None:
        return None
    try:
        document = orjson.loads(stored)
        ack = dt.date.fromisoformat(document["day"]), Decimal(document["floor"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, ArithmeticError) as exc:
        log.error("loss_acknowledgement_unreadable", error=str(exc))
        return None
    return ack if ack[1].is_finite() else None
