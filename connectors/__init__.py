"""Exchange adapters: WebSocket market data, order books and market-data value types.

The lowest layer: imports neither `router` nor `daemon`. It reports upward
through callbacks and its own Prometheus metrics (`connectors.metrics`).
"""
