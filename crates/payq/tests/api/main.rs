//! payq's integration tests: one binary, each test against its own real payq (HTTP on port
//! 0, a fresh database, the simulated channel calling back over real HTTP). The suite runs on
//! SQLite by default and on PostgreSQL with `PAYQ_TEST_DATABASE=postgres` (see [`db`]).

mod db;
mod helpers;
mod receiver;

mod admin;
mod alipay;
mod bad_input;
mod callbacks;
mod channels;
mod checkout;
mod cli;
mod clustered;
mod console;
mod crash;
mod demo;
mod distributed;
mod faults;
mod follow_up;
mod health;
mod idempotency;
mod merchants;
mod one_call;
mod one_statement;
mod orders;
mod pay_products;
mod payments;
mod real_channels;
mod reconciliation;
mod refunds;
mod schema;
mod security;
mod self_service;
mod shutdown;
mod telemetry;
mod verify;
mod webhooks;
mod wechatpay;
