"""The four Billstream services. None imports another: they talk only through Kafka events."""
