"""Connectors: sources and sinks for external systems, one package per family."""
