-- The watchdog of a collection retry (kind 'outcome'): fires when no payment outcome arrived in
-- time, so dunning counts the attempt as failed instead of waiting forever.
ALTER TABLE timers DROP CONSTRAINT timers_kind_check;
ALTER TABLE timers ADD CONSTRAINT timers_kind_check CHECK (kind IN ('overdue', 'retry', 'reminder', 'outcome'));
