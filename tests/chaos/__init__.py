"""`make chaos`: steady traffic through the gateway of an isolated stack while a seeded schedule
kills services, Kafka and PostgreSQL; then an audit that every acknowledged effect is there
exactly once. See docs/operations.md. Not collected by pytest (no test_ modules here); the pure
parts are tested in tests/unit/test_chaos_*.py."""
