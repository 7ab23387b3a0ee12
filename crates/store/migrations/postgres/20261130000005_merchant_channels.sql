-- Real payment channels per merchant: `channels` holds what may be shown (the Alipay app id
-- and gateway, as JSON; NULL: none), `channel_secrets` the full credentials, private keys
-- included, sealed with AES-256-GCM under PAYQ_SECRETS_KEY (never stored in plain text).
ALTER TABLE merchants ADD COLUMN channels TEXT;
ALTER TABLE merchants ADD COLUMN channel_secrets TEXT;
-- What the buyer does next to pay through a real channel (a QR code to scan, a page to
-- open), as JSON; NULL for the simulated channel.
ALTER TABLE payments ADD COLUMN next_action TEXT;
