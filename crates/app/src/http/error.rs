//! API errors as `application/problem+json` with a stable `code`.

use crate::usecases::{
    CreateOrderError, CreateRefundError, InputError, LookupError, MerchantChangeError, OrderChangeError, PayError,
    ProcessError, RedeliverError, ReviewRefundError, StoreFault, WriteError,
};
use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// An error answer: status, stable code, title and detail.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
    /// Whole seconds for `Retry-After` (a `503` says 1 unless told otherwise).
    pub retry_after_s: Option<u64>,
}

impl ApiError {
    /// An error with `status`, `code` and `detail`.
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError { status, code, detail: detail.into(), retry_after_s: None }
    }

    /// The same error, telling the client to retry after `wait` (rounded up to seconds).
    pub fn retry_after(mut self, wait: std::time::Duration) -> ApiError {
        self.retry_after_s = Some(wait.as_secs() + u64::from(wait.subsec_nanos() > 0));
        self
    }

    /// 400 `invalid_request`.
    pub fn invalid(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", detail)
    }

    /// 400 `validation_failed`.
    pub fn validation(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "validation_failed", detail)
    }

    /// 401 `unauthorized`.
    pub fn unauthorized(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }

    /// 404 `not_found`.
    pub fn not_found(what: &str) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("{what} not found"))
    }

    /// 413 `payload_too_large`.
    pub fn too_large() -> ApiError {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "request body exceeds 64 KiB")
    }

    /// 503 `storage_unavailable`: the database cannot take the request now; retry later.
    pub fn storage_unavailable(cause: &dyn std::fmt::Display) -> ApiError {
        tracing::warn!(error = %cause, "storage unavailable");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage_unavailable",
            "the database cannot take this request now; retry shortly",
        )
    }

    /// 500 `internal`, logging the cause; the body says nothing about it.
    pub fn internal(cause: &dyn std::fmt::Display) -> ApiError {
        tracing::error!(error = %cause, "request failed");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "an internal error occurred")
    }

    fn title(&self) -> &'static str {
        self.status.canonical_reason().unwrap_or("Error")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let retry_after = self
            .retry_after_s
            .or((self.status == StatusCode::SERVICE_UNAVAILABLE).then_some(1))
            .map(|s| [(header::RETRY_AFTER, s.to_string())]);
        let body = serde_json::json!({
            "type": format!("https://payq.dev/problems/{}", self.code),
            "title": self.title(),
            "status": self.status.as_u16(),
            "detail": self.detail,
            "code": self.code,
        });
        (self.status, retry_after, [(header::CONTENT_TYPE, "application/problem+json")], Json(body)).into_response()
    }
}

impl From<StoreFault> for ApiError {
    fn from(e: StoreFault) -> Self {
        match e {
            StoreFault::Contention(d) => ApiError::new(StatusCode::CONFLICT, "conflict", d),
            StoreFault::Unavailable(d) => ApiError::storage_unavailable(&d),
            StoreFault::Unexpected(e) => ApiError::internal(&format!("{e:#}")),
        }
    }
}

impl From<InputError> for ApiError {
    fn from(e: InputError) -> Self {
        match e {
            InputError::Malformed(d) => ApiError::invalid(d),
            InputError::OutOfBounds(d) => ApiError::new(StatusCode::BAD_REQUEST, "validation_failed", d),
        }
    }
}

/// 409 `invalid_state`: the resource's status does not allow what was asked.
fn invalid_state(detail: &dyn std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, "invalid_state", detail.to_string())
}

impl From<LookupError> for ApiError {
    fn from(e: LookupError) -> Self {
        match e {
            LookupError::NotFound(what) => ApiError::not_found(what),
            LookupError::Store(f) => f.into(),
        }
    }
}

impl From<CreateOrderError> for ApiError {
    fn from(e: CreateOrderError) -> Self {
        match e {
            CreateOrderError::Input(e) => e.into(),
            CreateOrderError::OrderNoTaken(d) => ApiError::new(StatusCode::CONFLICT, "conflict", d),
            CreateOrderError::Store(f) => f.into(),
        }
    }
}

impl From<PayError> for ApiError {
    fn from(e: PayError) -> Self {
        match e {
            PayError::Input(e) => e.into(),
            PayError::UnknownChannel(d) => ApiError::invalid(d),
            PayError::OrderNotFound => ApiError::not_found("order"),
            e @ PayError::DeadlinePassed => invalid_state(&e),
            PayError::InvalidState(e) => invalid_state(&e),
            PayError::Store(f) => f.into(),
        }
    }
}

impl From<OrderChangeError> for ApiError {
    fn from(e: OrderChangeError) -> Self {
        match e {
            OrderChangeError::Input(e) => e.into(),
            OrderChangeError::OrderNotFound => ApiError::not_found("order"),
            OrderChangeError::InvalidState(e) => invalid_state(&e),
            OrderChangeError::Store(f) => f.into(),
        }
    }
}

impl From<CreateRefundError> for ApiError {
    fn from(e: CreateRefundError) -> Self {
        match e {
            CreateRefundError::Input(e) => e.into(),
            CreateRefundError::OrderNotFound => ApiError::not_found("order"),
            CreateRefundError::NotRefundable(d) => invalid_state(&d),
            CreateRefundError::ExceedsRefundable(d) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "amount_exceeds_refundable", d)
            }
            CreateRefundError::Store(f) => f.into(),
        }
    }
}

impl From<ReviewRefundError> for ApiError {
    fn from(e: ReviewRefundError) -> Self {
        match e {
            ReviewRefundError::RefundNotFound => ApiError::not_found("refund"),
            ReviewRefundError::InvalidState(e) => invalid_state(&e),
            ReviewRefundError::Store(f) => f.into(),
        }
    }
}

impl From<WriteError> for ApiError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Input(e) => e.into(),
            WriteError::Store(f) => f.into(),
        }
    }
}

impl From<MerchantChangeError> for ApiError {
    fn from(e: MerchantChangeError) -> Self {
        match e {
            MerchantChangeError::Input(e) => e.into(),
            MerchantChangeError::MerchantNotFound => ApiError::not_found("merchant"),
            MerchantChangeError::Store(f) => f.into(),
        }
    }
}

impl From<RedeliverError> for ApiError {
    fn from(e: RedeliverError) -> Self {
        match e {
            RedeliverError::EventNotFound => ApiError::not_found("event"),
            e @ RedeliverError::NoWebhook => invalid_state(&e),
            RedeliverError::Store(f) => f.into(),
        }
    }
}

impl From<crate::usecases::ReconcileError> for ApiError {
    fn from(e: crate::usecases::ReconcileError) -> Self {
        use crate::usecases::ReconcileError;
        match e {
            ReconcileError::MerchantNotFound => ApiError::not_found("merchant"),
            ReconcileError::NotFound(what) => ApiError::not_found(what),
            e @ ReconcileError::ChannelNotSetUp(_) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "channel_not_set_up", e.to_string())
            }
            ReconcileError::Invalid(d) => ApiError::validation(d),
            ReconcileError::Store(f) => f.into(),
        }
    }
}

impl From<ProcessError> for ApiError {
    /// A channel's answer that payq could not record (the channel's notification endpoint).
    fn from(e: ProcessError) -> Self {
        match e {
            ProcessError::Store(f) => f.into(),
            e @ (ProcessError::Channel(_) | ProcessError::Broken(_)) => ApiError::internal(&e),
            e @ (ProcessError::Busy(_) | ProcessError::Unfinished(_)) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", e.to_string())
                    .retry_after(std::time::Duration::from_secs(1))
            }
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        match r.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::too_large(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "invalid_request",
                "expected a JSON body with content-type: application/json",
            ),
            _ => ApiError::invalid(r.body_text()),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::invalid(r.body_text())
    }
}
