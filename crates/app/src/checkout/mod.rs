//! The hosted checkout page (收银台, docs/checkout.md): where a merchant sends its buyer to
//! pay an order. Server-rendered HTML without JavaScript (strict CSP, the stylesheet
//! embedded in the binary): the merchant, the amount, the ways to pay that the merchant's
//! channels offer on the buyer's device, the payment's QR code drawn by payq, and the
//! outcome, refreshing itself while the payment is under way. Opened only with a signed
//! link ([`link`]) until the order's deadline.

pub mod link;
mod page;
mod text;

use crate::state::AppState;
use crate::usecases::{PayError, PayOrder, Payer};
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use payq_domain::{ChannelName, NextAction, OrderId, OrderStatus, PayProduct, Timestamp};
use serde::Deserialize;
use text::Lang;

/// The checkout page's security policy: nothing but its own stylesheet, forms posting back
/// to payq, never framed.
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self' https: http:; frame-ancestors 'none'";

/// The page's routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/checkout/assets/checkout.css", get(stylesheet))
        .route("/checkout/{id}", get(show).post(pay))
        .layer(axum::middleware::from_fn(headers))
        .with_state(state)
}

/// Every checkout answer: the CSP, never cached, never sniffed, no referrer (the link's token
/// is in the URL).
async fn headers(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    res
}

async fn stylesheet() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], include_str!("checkout.css"))
}

/// The buyer's device, as its browser says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    Desktop,
    Phone,
    /// WeChat's own browser (`MicroMessenger`).
    WeChat,
}

impl Device {
    fn of(headers: &HeaderMap) -> Device {
        let ua = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or_default();
        if ua.contains("MicroMessenger") {
            Device::WeChat
        } else if ["Mobile", "Android", "iPhone", "iPad"].iter().any(|m| ua.contains(m)) {
            Device::Phone
        } else {
            Device::Desktop
        }
    }
}

/// The ways to pay on `device` with the merchant's channels, best first: (channel, product).
fn ways_to_pay(device: Device, alipay: bool, wechatpay: bool) -> Vec<(ChannelName, PayProduct)> {
    use ChannelName::{Alipay, Wechatpay};
    let mut ways = Vec::new();
    let (a, w) = match device {
        Device::Desktop => ((Alipay, PayProduct::Qr), (Wechatpay, PayProduct::Native)),
        Device::Phone => ((Alipay, PayProduct::Wap), (Wechatpay, PayProduct::H5)),
        // Inside WeChat, its QR code is recognised by a long press; Alipay second.
        Device::WeChat => ((Alipay, PayProduct::Wap), (Wechatpay, PayProduct::Native)),
    };
    if device == Device::WeChat && wechatpay {
        ways.push(w);
    }
    if alipay {
        ways.push(a);
    }
    if device != Device::WeChat && wechatpay {
        ways.push(w);
    }
    ways
}

/// `?t=` (and what the last form post came to).
#[derive(Debug, Deserialize)]
struct PageQuery {
    #[serde(default)]
    t: String,
    #[serde(default)]
    e: Option<String>,
}

/// The page's state for one request.
struct Opened {
    order: payq_domain::Order,
    merchant: payq_domain::Merchant,
    link: link::Link,
    /// The key the link was checked with (the pay form's token is signed with it too).
    key: String,
}

/// Opens the order the link is for, or the `403` page.
async fn open(state: &AppState, id: &str, token: &str, lang: Lang) -> Result<Opened, Response> {
    let refused = || (StatusCode::FORBIDDEN, page::refused(lang)).into_response();
    let key = link::key(&state.admin_token);
    let Ok(order_id) = id.parse::<OrderId>() else { return Err(refused()) };
    let Some(link) = link::verify(&key, &order_id, token, Timestamp::now()) else { return Err(refused()) };
    if state.limiter.check(&link.merchant_id).is_err() {
        return Err((StatusCode::TOO_MANY_REQUESTS, page::busy(lang)).into_response());
    }
    let Ok((merchant, order)) = state.payq.merchant_order(&link.merchant_id, &order_id).await else {
        return Err(refused());
    };
    Ok(Opened { order, merchant, link, key })
}

/// `GET /checkout/{id}?t=…`.
async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
    headers: HeaderMap,
) -> Response {
    let lang = Lang::of(&headers);
    let opened = match open(&state, &id, &q.t, lang).await {
        Ok(o) => o,
        Err(refused) => return refused,
    };
    let device = Device::of(&headers);
    let channels = &opened.merchant.channels;
    let ways = ways_to_pay(device, channels.alipay.is_some(), channels.wechatpay.is_some());
    let view = page::View {
        lang,
        order: &opened.order,
        merchant: &opened.merchant,
        return_url: opened.link.return_url.as_deref(),
        token: &q.t,
        form_token: &link::form_token(&opened.key, &opened.order.id, &q.t),
        ways: &ways,
        error: q.e.as_deref(),
        device,
    };
    page::render(&view).into_response()
}

/// The pay form's fields.
#[derive(Debug, Deserialize)]
struct PayForm {
    #[serde(default)]
    form: String,
    #[serde(default)]
    channel: String,
}

/// `POST /checkout/{id}?t=…` with `form` and `channel`: starts the payment, then sends the
/// buyer to the channel's page (phones) or back here to scan its QR code.
async fn pay(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let lang = Lang::of(&headers);
    let opened = match open(&state, &id, &q.t, lang).await {
        Ok(o) => o,
        Err(refused) => return refused,
    };
    let form: PayForm = serde_urlencoded_form(&body);
    let back = |error: Option<&str>| {
        let mut url = format!("/checkout/{}?t={}", opened.order.id, urlencode(&q.t));
        if let Some(e) = error {
            url.push_str(&format!("&e={e}"));
        }
        Redirect::to(&url).into_response()
    };
    if !payq_domain::crypto::constant_time_eq(&form.form, &link::form_token(&opened.key, &opened.order.id, &q.t)) {
        return (StatusCode::FORBIDDEN, page::refused(lang)).into_response();
    }
    if opened.order.status != OrderStatus::PendingPayment {
        return back(None); // paid, paying or closed meanwhile: the page says which
    }
    let channels = &opened.merchant.channels;
    let ways = ways_to_pay(Device::of(&headers), channels.alipay.is_some(), channels.wechatpay.is_some());
    let Some((channel, product)) = ways.into_iter().find(|(c, _)| c.as_str() == form.channel) else {
        return back(Some("channel"));
    };
    let client_ip = client_ip(&headers);
    let req = PayOrder {
        channel: channel.as_str().to_owned(),
        product: Some(product),
        payer: (product == PayProduct::H5).then_some(Payer { openid: None, client_ip: Some(client_ip) }),
        return_url: opened.link.return_url.clone(),
        simulate: None,
    };
    match state.payq.pay(&opened.merchant, &opened.order.id, req).await {
        Ok(order) => match order.payment.and_then(|p| p.next_action) {
            Some(NextAction::Redirect { url }) => Redirect::to(&url).into_response(),
            _ => back(None),
        },
        Err(PayError::Store(e)) => {
            tracing::warn!(error = %e, "checkout: could not start the payment");
            back(Some("unavailable"))
        }
        Err(e) => {
            tracing::info!(error = %e, "checkout: payment not started");
            back(Some("refused"))
        }
    }
}

/// The buyer's address as the proxy in front of payq saw it (`X-Forwarded-For`, then
/// `X-Real-IP`), else loopback: WeChat Pay's H5 checks it against the buyer's own.
fn client_ip(headers: &HeaderMap) -> String {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    header("x-forwarded-for")
        .and_then(|f| f.split(',').next().map(|s| s.trim().to_owned()))
        .or_else(|| header("x-real-ip"))
        .filter(|ip| ip.parse::<std::net::IpAddr>().is_ok())
        .unwrap_or_else(|| "127.0.0.1".to_owned())
}

fn serde_urlencoded_form(body: &str) -> PayForm {
    let get = |name: &str| {
        form_urlencoded::parse(body.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    PayForm { form: get("form"), channel: get("channel") }
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
