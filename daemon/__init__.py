"""The runtime: configuration, Kafka I/O, HTTP (metrics/health), logging, supervision and the CLI."""
