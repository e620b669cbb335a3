"""Rendering of results: rich tables for people, JSON for scripts. No computation here."""
