"""Integrations with engines regenrt plugs into rather than re-implements (Ray Data for batch inference)."""
