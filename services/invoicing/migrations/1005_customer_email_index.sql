-- An invoice created with an inline customer {name, email} finds the tenant's customer by e-mail;
-- the customer list filters on it too.
CREATE INDEX customer_list_email_idx ON customer_list (tenant_id, email, created_at);
