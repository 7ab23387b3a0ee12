//! What every HTTP handler can reach (the API's, the console's and the checkout page's):
//! the use cases and the edge's own parts. A leaf of the edge: the API, the console and the
//! checkout page each depend on it, and none on another (docs/architecture.md).

use crate::rate_limit::RateLimiter;
use crate::usecases::Payq;
use metrics_exporter_prometheus::PrometheusHandle;
use payq_channels::sim::SimChannel;
use payq_domain::crypto::constant_time_eq;
use std::sync::Arc;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub payq: Payq,
    pub admin_token: Arc<str>,
    pub sim: Arc<SimChannel>,
    pub metrics: Option<PrometheusHandle>,
    pub openapi: Arc<String>,
    pub limiter: Arc<RateLimiter>,
}

impl AppState {
    /// Whether `token` is the admin token.
    pub fn is_admin_token(&self, token: &str) -> bool {
        constant_time_eq(token, &self.admin_token)
    }
}
