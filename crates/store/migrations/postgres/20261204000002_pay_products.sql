-- How the buyer pays through a real channel (`qr`, `web`, `wap`, `app`, `native`, `jsapi`,
-- `mini_program`, `h5`; docs/channels.md, "Pay products"); NULL for the simulated channel.
ALTER TABLE payments ADD COLUMN product TEXT;
