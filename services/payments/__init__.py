"""Payments: providers, automatic collection, refunds, checkout and the hosted payment page."""
