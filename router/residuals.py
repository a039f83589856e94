"""An arbitrage's residual: what its legs left unhedged, how each attempt to flatten it is priced.

Pure decisions from explicit inputs (no ledger, cache or executor); the
`router.residual_worker` carries them out. When the buy leg fills more than the
sell leg the desk is long the difference on the buy venue, and short it on the
sell venue in the opposite case. Attempts run in rounds: IOC on that venue at
its fresh top of book, the limit widened by `step_bps` each time up to
`max_slippage_bps`, then once on the best other venue (fee-inclusive, fresh
quote) at `max_slippage_bps`; then the next round from fresh quotes again. An
attempt due on the residual's venue while it has no fresh quote goes to the
best other venue at that attempt's allowance.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from connectors.types import BPS, Quote, Side, decimal_text
from router.execution import LegOutcome, OrderLeg, protective_limit
from router.ledger import ResidualRecord

# Legs 0 and 1 are the arbitrage's buy and sell; attempts on its residual are legs 2, 3, 4, …
FIRST_RESIDUAL_LEG = 2

ResidualPolicy = Literal["unwind", "report"]


@dataclass(frozen=True, slots=True)
class ResidualSettings:
    """How residuals are handled: `[router] residual_*` in the config."""

    policy: ResidualPolicy = "unwind"
    max_slippage_bps: Decimal = Decimal(50)
    step_bps: Decimal = Decimal(10)
    timeout_ms: int = 30_000

    def widening(self) -> tuple[Decimal, ...]:
        """Return the slippage allowance of each attempt on the residual's venue in one round."""
        steps: list[Decimal] = []
        bps = Decimal(0)
        while bps < self.max_slippage_bps:
            steps.append(bps)
            bps += self.step_bps
        return (*steps, self.max_slippage_bps)


def residual_of(
    request_id: str, symbol: str, buy: LegOutcome, sell: LegOutcome, policy: ResidualPolicy, now_ns: int
) -> ResidualRecord | None:
    """Return the residual bought − sold leaves (None when hedged), "open" to work or "left" to report."""
    excess = buy.filled - sell.filled
    if excess == 0:
        return None
    long = excess > 0
    return ResidualRecord(
        request_id=request_id,
        venue=buy.leg.venue if long else sell.leg.venue,
        symbol=symbol,
        side="sell" if long else "buy",
        quantity=abs(excess),
        remaining=abs(excess),
        started_ns=now_ns,
        attempts=0,
        state="open" if policy == "unwind" else "left",
        updated_ns=now_ns,
    )


def next_attempt(
    residual: ResidualRecord,
    leg: int,
    quotes: Mapping[str, Quote],
    fees_bps: Mapping[str, Decimal],
    settings: ResidualSettings,
) -> OrderLeg | None:
    """Return the IOC leg of the residual's next attempt, or None when no venue has a usable quote.

    `quotes` are fresh, uncrossed quotes of the venues the router may trade on (`fees_bps`).
    """
    side: Side = "sell" if residual.side == "sell" else "buy"
    widening = settings.widening()
    stage = residual.attempts % (len(widening) + 1)
    home = quotes.get(residual.venue)
    venue = residual.venue
    bps = widening[stage] if stage < len(widening) else settings.max_slippage_bps
    if stage >= len(widening) or home is None:
        other = best_other_venue(residual, quotes, fees_bps)
        if other is not None:
            venue = other
        elif home is None:
            return None
    quote = quotes[venue]
    limit = protective_limit(quote.bid if side == "sell" else quote.ask, side, bps, None)
    return OrderLeg(residual.request_id, leg, venue, residual.symbol, side, residual.remaining, limit)


def best_other_venue(
    residual: ResidualRecord, quotes: Mapping[str, Quote], fees_bps: Mapping[str, Decimal]
) -> str | None:
    """Return the venue other than the residual's with the best fee-inclusive top of book for it."""
    best: tuple[Decimal, str] | None = None
    for venue, quote in sorted(quotes.items()):
        if venue == residual.venue or venue not in fees_bps:
            continue
        fee = fees_bps[venue] / BPS
        if residual.side == "sell":
            if quote.bid_qty <= 0:
                continue
            score = -quote.bid * (1 - fee)  # the most received per unit sold
        else:
            if quote.ask_qty <= 0:
                continue
            score = quote.ask * (1 + fee)  # the least paid per unit bought
        if best is None or score < best[0]:
            best = (score, venue)
    return None if best is None else best[1]


def residual_report(
    residual: ResidualRecord, attempts: Sequence[LegOutcome], settings: ResidualSettings
) -> dict[str, object]:
    """Return the result's `residual`: the unhedged quantity, what was done, what remains."""
    unwound = residual.quantity - residual.remaining
    if residual.state == "left":
        action = "left"
    elif residual.remaining == 0:
        action = "unwound"
    else:
        action = "partially_unwound" if unwound > 0 else "unwind_failed"
    report: dict[str, object] = {
        "quantity": decimal_text(residual.quantity),
        "venue": residual.venue,
        "exposure": "long" if residual.side == "sell" else "short",
        "side": residual.side,
        "state": "working" if residual.state == "open" else residual.state,
        "action": action,
        "attempts": residual.attempts,
        "unwound_quantity": decimal_text(unwound),
        "remaining_quantity": decimal_text(residual.remaining),
        "message": _message(residual, attempts, settings),
    }
    return report


def _message(residual: ResidualRecord, attempts: Sequence[LegOutcome], settings: ResidualSettings) -> str:
    remaining = f"{decimal_text(residual.remaining)} {residual.symbol}"
    if residual.state == "left":
        text = f'left unhedged on {residual.venue} (residual_policy = "report"): the desk flattens it'
    elif residual.state == "flat":
        text = f"flattened in {residual.attempts} attempt(s)"
    elif residual.state == "abandoned":
        text = f"{remaining} not flat within {settings.timeout_ms} ms: trading is halted"
    else:
        text = (
            f"{remaining} still unhedged on {residual.venue}; the router keeps working it (IOC, limit "
            f"widened up to {decimal_text(settings.max_slippage_bps)} bps, then the best other venue) and "
            f"halts trading if it is not flat {settings.timeout_ms} ms after it began"
        )
    if residual.state == "open" and not attempts:
        return text + "; no attempt yet (no fresh quote, or trading is halted)"
    last = attempts[-1].error if attempts else None
    return text + (f"; last attempt: {last}" if last else "")
