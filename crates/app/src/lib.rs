//! payq's application layer: use cases, the worker that runs them from messages, the
//! simulated payment channel, risk control, the HTTP API, configuration and telemetry.
//!
//! [`Application`] wires them together; the `payq` binary only parses the command line and
//! calls it.

pub mod application;
pub mod checkout;
pub mod config;
pub mod console;
pub use payq_domain::crypto;
pub mod delivery_gate;
pub mod http;
pub mod jobs;
pub mod rate_limit;
pub mod risk;
pub mod routing;
pub mod secrets;
pub mod state;
pub mod telemetry;
pub mod url_policy;
pub mod usecases;
pub mod worker;

pub use application::Application;
pub use config::Settings;
pub use usecases::Payq;
