use crate::helpers::spawn_app;

#[tokio::test]
async fn probes_answer() {
    let app = spawn_app().await;
    let r = app.send(reqwest::Method::GET, "/healthz", None, None).await;
    assert_eq!((r.status, r.body["status"].as_str()), (200, Some("ok")));
    let r = app.send(reqwest::Method::GET, "/readyz", None, None).await;
    assert_eq!((r.status, r.body["status"].as_str()), (200, Some("ready")));
}

#[tokio::test]
async fn openapi_lists_every_route() {
    let app = spawn_app().await;
    let r = app.send(reqwest::Method::GET, "/openapi.json", None, None).await;
    assert_eq!(r.status, 200);
    let paths = r.body["paths"].as_object().cloned().unwrap_or_default();
    for p in [
        "/v1/merchants",
        "/v1/merchants/{id}",
        "/v1/orders",
        "/v1/orders/{id}",
        "/v1/orders/{id}/pay",
        "/v1/orders/{id}/close",
        "/v1/orders/{id}/ship",
        "/v1/orders/{id}/cancel",
        "/v1/orders/{id}/refunds",
        "/v1/refunds/{id}",
        "/v1/refunds/{id}/approve",
        "/v1/refunds/{id}/reject",
        "/v1/inventory/{sku}",
        "/v1/events",
        "/v1/channels/sim/notify",
        "/v1/admin/dead-letters",
        "/v1/admin/dead-letters/{id}/replay",
        "/v1/admin/stats",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
    ] {
        assert!(paths.contains_key(p), "openapi misses {p}");
    }
    assert!(r.body["components"]["schemas"]["Order"].is_object());
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_status() {
    let app = spawn_app().await;
    let m = app.merchant().await;
    app.order(&m, "M-1", 100).await;
    let text = app.http.get(app.url("/metrics")).send().await.expect("sent").text().await.expect("text");
    assert!(text.contains(r#"payq_http_requests_total{route="/v1/orders",method="POST",status="2xx"}"#), "{text}");
    assert!(text.contains("payq_http_request_duration_seconds_bucket"), "{text}");
}

#[tokio::test]
async fn unknown_routes_are_problems() {
    let app = spawn_app().await;
    let r = app.send(reqwest::Method::GET, "/v1/nope", None, None).await;
    crate::helpers::assert_problem(&r, 404, "not_found");
}
