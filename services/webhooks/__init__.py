"""Webhooks: signed, retried delivery of every public event to subscriber endpoints."""
