//! The checkout page's HTML: one layout for every state of the order, and the `403` page.

use super::text::{Key, Lang};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use payq_domain::{
    ChannelName, Currency, Merchant, NextAction, Order, OrderStatus, PayProduct, PaymentStatus, Timestamp,
};

/// What one page shows.
pub struct View<'a> {
    pub lang: Lang,
    pub order: &'a Order,
    pub merchant: &'a Merchant,
    pub return_url: Option<&'a str>,
    pub token: &'a str,
    pub form_token: &'a str,
    pub ways: &'a [(ChannelName, PayProduct)],
    /// What the last form post came to (`refused`, `unavailable`, `channel`).
    pub error: Option<&'a str>,
    pub device: super::Device,
}

fn shell(lang: Lang, title: &str, refresh: bool, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang=(lang.code()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @if refresh { meta http-equiv="refresh" content="3"; }
                title { (title) }
                link rel="stylesheet" href="/checkout/assets/checkout.css";
            }
            body { main { (body) } }
        }
    }
}

/// The amount as buyers read it: `¥19.99`, `19.99 USD`.
fn amount(minor: i64, currency: Currency) -> String {
    let value = format!("{}.{:02}", minor.unsigned_abs() / 100, minor.unsigned_abs() % 100);
    match currency {
        Currency::Cny => format!("¥{value}"),
        other => format!("{value} {}", other.code()),
    }
}

/// Minutes and seconds from `now` until `until` (`14:59`).
fn time_left(now: Timestamp, until: Timestamp) -> String {
    let s = (until.millis() - now.millis()).max(0) / 1000;
    format!("{}:{:02}", s / 60, s % 60)
}

/// A QR code of `data` as inline SVG (drawn by payq: nothing is fetched).
fn qr_svg(data: &str) -> Option<String> {
    let code = qrcode::QrCode::new(data.as_bytes()).ok()?;
    let svg = code.render::<qrcode::render::svg::Color<'_>>().min_dimensions(232, 232).quiet_zone(true).build();
    // Inline in HTML: without the XML declaration.
    Some(svg.split_once("?>").map_or(svg.clone(), |(_, rest)| rest.to_owned()))
}

fn channel_name(lang: Lang, channel: ChannelName) -> &'static str {
    match channel {
        ChannelName::Sim => lang.t(Key::Simulated),
        ChannelName::Alipay => lang.t(Key::Alipay),
        ChannelName::Wechatpay => lang.t(Key::WechatPay),
    }
}

/// The page for the order as it stands.
pub fn render(v: &View<'_>) -> Markup {
    let lang = v.lang;
    let order = v.order;
    let paying = order.status == OrderStatus::Paying;
    let payment = order.payment.as_ref();
    let body = html! {
        header {
            p.merchant #merchant { (v.merchant.name) }
            p.amount #amount { (amount(order.amount, order.currency)) }
            p.description { (order.description.as_deref().unwrap_or(&order.merchant_order_no)) }
            p.muted { (lang.t(Key::Order)) " " code { (order.merchant_order_no) } }
        }
        @match order.status {
            OrderStatus::PendingPayment => {
                p.muted #time-left { (lang.t(Key::PayWithin)) " " strong { (time_left(Timestamp::now(), order.expires_at)) } }
                @if payment.is_some_and(|p| p.status == PaymentStatus::Failed) {
                    p.error role="alert" #failed { (lang.t(Key::Failed)) }
                }
                @if v.error.is_some() { p.error role="alert" #refused { (lang.t(Key::Refused)) } }
                @if v.ways.is_empty() { p #no-way { (lang.t(Key::NoWay)) } } @else {
                    h1 { (lang.t(Key::ChooseWay)) }
                    @for (channel, product) in v.ways {
                        form.way method="post" action={ "/checkout/" (order.id) "?t=" (v.token) } {
                            input type="hidden" name="form" value=(v.form_token);
                            input type="hidden" name="channel" value=(channel);
                            button type="submit" id={ "pay-" (channel) } class=(channel) data-product=(product.as_str()) {
                                (channel_name(lang, *channel))
                            }
                        }
                    }
                }
            }
            OrderStatus::Paying => {
                @let channel = payment.map_or(ChannelName::Sim, |p| p.channel);
                @match payment.and_then(|p| p.next_action.as_ref()) {
                    Some(NextAction::QrCode { qr_code }) => {
                        p #scan { (lang.t(Key::ScanWith)) (channel_name(lang, channel)) }
                        @if let Some(svg) = qr_svg(qr_code) { div.qr #qr { (PreEscaped(svg)) } }
                        @if v.device != super::Device::Desktop { p.muted { (lang.t(Key::LongPress)) } }
                    }
                    Some(NextAction::Redirect { url }) => {
                        p { a.button #continue href=(url) { (lang.t(Key::ContinueAt)) " · " (channel_name(lang, channel)) } }
                    }
                    _ => {}
                }
                p.muted #waiting { (lang.t(Key::Waiting)) }
            }
            OrderStatus::Paid | OrderStatus::Shipped | OrderStatus::Refunded => {
                h1.ok #outcome { (lang.t(Key::Paid)) }
                p { (lang.t(Key::PaidText)) }
                @if let Some(url) = v.return_url { p { a.button #back href=(url) { (lang.t(Key::BackToShop)) } } }
            }
            OrderStatus::Closed => {
                h1 #outcome { (lang.t(Key::Closed)) }
                p { (lang.t(Key::ClosedText)) }
                @if let Some(url) = v.return_url { p { a #back href=(url) { (lang.t(Key::BackToShop)) } } }
            }
            OrderStatus::Cancelled => {
                h1 #outcome { (lang.t(Key::Cancelled)) }
                @if let Some(url) = v.return_url { p { a #back href=(url) { (lang.t(Key::BackToShop)) } } }
            }
        }
    };
    shell(lang, &format!("{} · {}", lang.t(Key::Title), v.merchant.name), paying, body)
}

/// The page of a link that is not valid (or no longer): it says nothing about the order.
pub fn refused(lang: Lang) -> Markup {
    shell(
        lang,
        lang.t(Key::Title),
        false,
        html! { h1 #outcome { (lang.t(Key::Invalid)) } p { (lang.t(Key::InvalidText)) } },
    )
}

/// The page of a merchant whose request rate is over its limit.
pub fn busy(lang: Lang) -> Markup {
    shell(lang, lang.t(Key::Title), false, html! { h1 #outcome { (lang.t(Key::Busy)) } })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_and_time_left_read_as_buyers_expect() {
        assert_eq!(amount(1999, Currency::Cny), "¥19.99");
        assert_eq!(amount(5, Currency::Cny), "¥0.05");
        assert_eq!(time_left(Timestamp::from_millis(0), Timestamp::from_millis(899_500)), "14:59");
        assert_eq!(time_left(Timestamp::from_millis(10), Timestamp::from_millis(0)), "0:00");
        let svg = qr_svg("https://qr.alipay.com/2026abc").expect("svg");
        assert!(svg.trim_start().starts_with("<svg") && svg.contains("</svg>"), "{svg}");
    }
}
