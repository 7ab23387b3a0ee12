//! A real HTTP server standing in for a merchant's webhook endpoint: it records every
//! request and answers as told (fail the first N attempts per event, or always).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// One request the endpoint received.
#[derive(Debug, Clone)]
pub struct Received {
    pub event_id: String,
    pub signature: String,
    pub body: String,
    /// The status the endpoint answered.
    pub status: u16,
}

#[derive(Default)]
struct Inner {
    fail_first: usize,
    always_fail: bool,
    seen: HashMap<String, usize>,
    log: Vec<Received>,
}

/// The webhook endpoint.
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
}

impl Receiver {
    /// Starts an endpoint that answers 200 to everything.
    pub async fn start() -> Receiver {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = axum::Router::new().route("/hook", axum::routing::post(hook)).with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { url, inner }
    }

    /// Answer 500 to the first `n` attempts of each event.
    pub fn fail_first(&self, n: usize) {
        self.inner.lock().expect("lock").fail_first = n;
    }

    /// Answer 500 to everything (or stop doing so).
    pub fn always_fail(&self, on: bool) {
        self.inner.lock().expect("lock").always_fail = on;
    }

    /// Every request so far.
    pub fn log(&self) -> Vec<Received> {
        self.inner.lock().expect("lock").log.clone()
    }

    /// The event ids answered 2xx, in arrival order.
    pub fn delivered(&self) -> Vec<String> {
        self.log().into_iter().filter(|r| r.status == 200).map(|r| r.event_id).collect()
    }
}

async fn hook(State(inner): State<Arc<Mutex<Inner>>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let event_id = header("payq-event-id");
    let mut inner = inner.lock().expect("lock");
    let attempt = {
        let n = inner.seen.entry(event_id.clone()).or_default();
        *n += 1;
        *n
    };
    let status = if inner.always_fail || attempt <= inner.fail_first { 500 } else { 200 };
    inner.log.push(Received {
        event_id,
        signature: header("payq-signature"),
        body: String::from_utf8_lossy(&body).into_owned(),
        status,
    });
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}
