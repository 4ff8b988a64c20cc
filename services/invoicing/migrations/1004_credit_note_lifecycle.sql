-- Credit notes made by hand can be voided, and the list filters on who, what and why. Each row
-- keeps the invoice stream version that last changed it, so a late write cannot undo a void.
-- Notes from before carry no status or reason code: a refund's note, or a write-off's (the only
-- adjustments then), as the projection's with_defaults says for a rebuild.
ALTER TABLE credit_notes ADD COLUMN customer_id text,
                         ADD COLUMN type text,
                         ADD COLUMN status text,
                         ADD COLUMN reason_code text,
                         ADD COLUMN amount bigint,
                         ADD COLUMN currency text,
                         ADD COLUMN version integer NOT NULL DEFAULT 0;
UPDATE credit_notes SET view = jsonb_build_object(
        'status', CASE WHEN view->>'type' = 'refund' THEN 'refunded' ELSE 'adjusted' END,
        'reasonCode', CASE WHEN view->>'type' = 'refund' THEN 'refund' ELSE 'write_off' END,
        'voidedAt', NULL) || view;
UPDATE credit_notes SET customer_id = view->>'customerId', type = view->>'type', status = view->>'status',
                        reason_code = view->>'reasonCode', amount = (view->>'amount')::bigint,
                        currency = view->>'currency';
CREATE INDEX credit_notes_customer_idx ON credit_notes (tenant_id, customer_id);
