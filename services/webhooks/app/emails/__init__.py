"""Customer e-mails: which events send which message (compose), the templates that render it
(render), and the mailer that sends recorded messages over SMTP (mailer)."""
