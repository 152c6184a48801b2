"""Lookalike's HTTP API, database layer and command line."""
