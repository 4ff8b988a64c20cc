"""Billstream's common library: event envelope, event store, outbox, inbox, projections, auth.

Nothing here knows about invoices or payments; services build their domains on top of it.
"""
