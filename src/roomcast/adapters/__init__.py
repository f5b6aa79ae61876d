"""Cluster adapters (Redis)."""
