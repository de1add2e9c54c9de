"""Snapshot expiration in two phases: `expire` (metadata commit, purge journal) and `purge` (cold copy, delete)."""
