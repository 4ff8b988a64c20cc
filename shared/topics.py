"""The platform's Kafka topics, named once. Each service publishes its streams to its own
(domain/events.py STREAM_TOPICS) and reads the others' by these names; docs/events.md
describes what each carries."""

INVOICES = "billing.invoices"
CUSTOMERS = "billing.customers"
TENANTS = "billing.tenants"
PAYMENTS = "billing.payments"
DUNNING = "billing.dunning"
WEBHOOKS = "billing.webhooks"
SUBSCRIPTIONS = "billing.subscriptions"  # plans and subscriptions (invoicing)
