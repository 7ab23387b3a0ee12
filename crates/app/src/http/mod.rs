//! The HTTP API (v1; see the README tour and `/openapi.json`): routes, their OpenAPI description (generated from the same
//! route table, so the two cannot drift), and the middleware around them.

mod admin;
mod channels;
pub mod error;
mod events;
pub mod extract;
mod health;
mod inventory;
mod merchants;
pub mod middleware;
mod orders;
mod reconciliation;
mod refunds;

pub use crate::state::AppState;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

#[derive(OpenApi)]
#[openapi(
    info(title = "payq", description = "Payment orders, payments, refunds and their time-driven follow-up."),
    modifiers(&BearerAuth),
    tags(
        (name = "merchants", description = "Merchants (admin token)"),
        (name = "orders", description = "Payment orders"),
        (name = "refunds", description = "Refunds"),
        (name = "inventory", description = "Stock for the post-payment check"),
        (name = "events", description = "The merchant's event log"),
        (name = "channels", description = "Payment channel callbacks"),
        (name = "admin", description = "Operations (admin token)"),
        (name = "health", description = "Probes and metrics"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Documents what every operation shares: error answers as `application/problem+json`
/// (`4XX`, `5XX`) and, on every `POST`, the optional `Idempotency-Key` header.
struct ProblemsAndKeys;

impl utoipa::Modify for ProblemsAndKeys {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
        use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
        use utoipa::openapi::{ContentBuilder, Ref, Required, ResponseBuilder};
        let text = || ObjectBuilder::new().schema_type(SchemaType::Type(Type::String));
        let problem = ObjectBuilder::new()
            .property("type", text())
            .property("title", text())
            .property("status", ObjectBuilder::new().schema_type(SchemaType::Type(Type::Integer)))
            .property("detail", text())
            .property("code", text().description(Some("stable machine-readable code, e.g. validation_failed")))
            .required("type")
            .required("title")
            .required("status")
            .required("detail")
            .required("code")
            .build();
        let components = openapi.components.get_or_insert_with(Default::default);
        components.schemas.insert("Problem".into(), problem.into());
        let answer = |what: &str| {
            ResponseBuilder::new()
                .description(what)
                .content(
                    "application/problem+json",
                    ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build(),
                )
                .build()
        };
        let key = ParameterBuilder::new()
            .name("Idempotency-Key")
            .parameter_in(ParameterIn::Header)
            .required(Required::False)
            .description(Some("Repeats of this request with the same key and body return the first answer (kept 24 h)"))
            .schema(Some(text().min_length(Some(1)).max_length(Some(255)).pattern(Some("^[!-~]+$"))))
            .build();
        for item in openapi.paths.paths.values_mut() {
            let operations = [&mut item.get, &mut item.post, &mut item.put, &mut item.patch, &mut item.delete];
            for (i, operation) in operations.into_iter().enumerate() {
                let Some(operation) = operation else { continue };
                let responses = &mut operation.responses.responses;
                responses.entry("4XX".into()).or_insert_with(|| answer("the request was refused; see `code`").into());
                responses.entry("5XX".into()).or_insert_with(|| answer("payq could not serve it now").into());
                if i == 1 {
                    operation.parameters.get_or_insert_with(Vec::new).push(key.clone());
                }
            }
        }
    }
}

/// The route table, with its OpenAPI description.
fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(merchants::create))
        .routes(routes!(merchants::get, merchants::update))
        .routes(routes!(merchants::rotate))
        .routes(routes!(orders::create, orders::list))
        .routes(routes!(orders::get))
        .routes(routes!(orders::pay))
        .routes(routes!(orders::checkout))
        .routes(routes!(orders::close))
        .routes(routes!(orders::ship))
        .routes(routes!(orders::cancel))
        .routes(routes!(refunds::create))
        .routes(routes!(refunds::get))
        .routes(routes!(refunds::approve))
        .routes(routes!(refunds::reject))
        .routes(routes!(inventory::put, inventory::get))
        .routes(routes!(events::list))
        .routes(routes!(events::redeliver))
        .routes(routes!(channels::sim_notify))
        .routes(routes!(channels::alipay_notify))
        .routes(routes!(channels::wechatpay_notify))
        .routes(routes!(admin::dead_letters))
        .routes(routes!(admin::replay))
        .routes(routes!(admin::stats))
        .routes(routes!(reconciliation::list, reconciliation::start))
        .routes(routes!(reconciliation::get))
        .routes(routes!(reconciliation::discrepancies))
        .routes(routes!(reconciliation::resolve))
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::metrics))
        .routes(routes!(health::openapi))
}

/// The OpenAPI document of the API, as JSON.
pub fn openapi_json() -> String {
    let (_, mut api) = routes().split_for_parts();
    // After the routes are in: the shared parts apply to every operation.
    utoipa::Modify::modify(&ProblemsAndKeys, &mut api);
    api.to_pretty_json().unwrap_or_else(|_| "{}".into())
}

/// The API router.
pub fn router(state: AppState) -> Router {
    let (router, _) = routes().split_for_parts();
    let api = router
        .route_layer(axum::middleware::from_fn(middleware::track))
        .layer(axum::middleware::from_fn_with_state(state.clone(), middleware::idempotency))
        .layer(DefaultBodyLimit::max(middleware::BODY_LIMIT))
        .fallback(|| async { error::ApiError::not_found("route") })
        .layer(axum::middleware::from_fn(middleware::problems_only))
        .with_state(state.clone());
    // The console answers HTML (its errors too), beside the API's problem documents.
    api.merge(crate::console::router(state.clone()))
        .merge(crate::checkout::router(state))
        // The access log: one `info` line per request with its status and latency, inside
        // the request's span; the request id is set first and echoed in the response.
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_request(())
                .on_response(DefaultOnResponse::new().level(tracing::Level::INFO))
                .on_failure(()),
        )
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
}

/// The span a request runs in: its id (`x-request-id`, the caller's or a new UUID), method
/// and path, so every log line it causes names them.
fn request_span(req: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    let request_id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or_default();
    tracing::info_span!("request", request_id, method = %req.method(), path = %req.uri().path())
}

/// The probes alone (`/healthz`, `/readyz`, `/metrics`): what a process that does not
/// serve the API (a worker) answers on its listener, so it can be watched like the rest.
pub fn probes_router(state: AppState) -> Router {
    use axum::routing::get;
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .fallback(|| async { error::ApiError::not_found("route") })
        .layer(axum::middleware::from_fn(middleware::problems_only))
        .with_state(state)
}

/// Parses a path id, treating a malformed one as a resource that does not exist.
fn path_id<T: std::str::FromStr>(raw: &str, what: &str) -> Result<T, error::ApiError> {
    raw.parse().map_err(|_| error::ApiError::not_found(what))
}

/// A page size from `?limit=`: 1 to 100, default 20.
fn page_limit(limit: Option<u32>) -> Result<u32, error::ApiError> {
    match limit {
        None => Ok(20),
        Some(n @ 1..=100) => Ok(n),
        Some(_) => Err(error::ApiError::invalid("limit must be between 1 and 100")),
    }
}
