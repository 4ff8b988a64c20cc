"""Dunning: owns time. Durable timers for due dates, collection retries and reminders."""
