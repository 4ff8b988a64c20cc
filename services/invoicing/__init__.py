"""Invoicing: customers, invoices, credit notes, numbering, and the tenants and API keys."""
