//! What the checkout page says, in Simplified Chinese and English (by `Accept-Language`).

use axum::http::{HeaderMap, header};

/// The page's language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Zh,
    En,
}

impl Lang {
    /// The buyer's first language payq speaks (`zh…` or else English).
    pub fn of(headers: &HeaderMap) -> Lang {
        let accept = headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()).unwrap_or_default();
        let first = accept
            .split(',')
            .map(|l| l.split(';').next().unwrap_or_default().trim().to_ascii_lowercase())
            .find(|l| l.starts_with("zh") || l.starts_with("en"));
        match first {
            Some(l) if l.starts_with("zh") => Lang::Zh,
            _ => Lang::En,
        }
    }

    /// The `lang` attribute.
    pub fn code(self) -> &'static str {
        match self {
            Lang::Zh => "zh-CN",
            Lang::En => "en",
        }
    }

    /// The text of `key`.
    pub fn t(self, key: Key) -> &'static str {
        use Key::*;
        match (self, key) {
            (Lang::Zh, Title) => "收银台",
            (Lang::En, Title) => "Checkout",
            (Lang::Zh, PayWithin) => "请在以下时间内完成支付",
            (Lang::En, PayWithin) => "Pay within",
            (Lang::Zh, ChooseWay) => "选择支付方式",
            (Lang::En, ChooseWay) => "Choose how to pay",
            (Lang::Zh, Alipay) => "支付宝",
            (Lang::En, Alipay) => "Alipay",
            (Lang::Zh, WechatPay) => "微信支付",
            (Lang::En, WechatPay) => "WeChat Pay",
            (Lang::Zh, Simulated) => "模拟渠道",
            (Lang::En, Simulated) => "the simulated channel",
            (Lang::Zh, ScanWith) => "请使用手机扫码支付：",
            (Lang::En, ScanWith) => "Scan with your phone to pay with ",
            (Lang::Zh, LongPress) => "长按二维码识别支付",
            (Lang::En, LongPress) => "Press and hold the QR code to pay",
            (Lang::Zh, Waiting) => "等待支付结果，本页会自动刷新。",
            (Lang::En, Waiting) => "Waiting for your payment; this page refreshes by itself.",
            (Lang::Zh, ContinueAt) => "前往支付",
            (Lang::En, ContinueAt) => "Continue to pay",
            (Lang::Zh, Paid) => "支付成功",
            (Lang::En, Paid) => "Paid",
            (Lang::Zh, PaidText) => "我们已收到您的付款，谢谢。",
            (Lang::En, PaidText) => "Your payment has arrived. Thank you.",
            (Lang::Zh, BackToShop) => "返回商户",
            (Lang::En, BackToShop) => "Back to the shop",
            (Lang::Zh, Closed) => "订单已关闭",
            (Lang::En, Closed) => "This order is closed",
            (Lang::Zh, ClosedText) => "订单未在规定时间内支付，已关闭。未扣款。",
            (Lang::En, ClosedText) => "It was not paid in time. Nothing was charged.",
            (Lang::Zh, Cancelled) => "订单已取消",
            (Lang::En, Cancelled) => "This order was cancelled",
            (Lang::Zh, Failed) => "上次支付未成功，请重新选择支付方式。",
            (Lang::En, Failed) => "The last payment did not go through. Please try again.",
            (Lang::Zh, Refused) => "支付未能发起，请换一种方式或稍后再试。",
            (Lang::En, Refused) => "The payment could not be started. Please try another way or try again later.",
            (Lang::Zh, NoWay) => "该商户暂未开通在线支付。",
            (Lang::En, NoWay) => "This shop does not take online payments yet.",
            (Lang::Zh, Invalid) => "链接无效或已过期",
            (Lang::En, Invalid) => "This payment link is not valid or has expired",
            (Lang::Zh, InvalidText) => "请向商户索取新的支付链接。",
            (Lang::En, InvalidText) => "Ask the shop for a new payment link.",
            (Lang::Zh, Busy) => "请求过于频繁，请稍后再试。",
            (Lang::En, Busy) => "Too many requests; please try again in a moment.",
            (Lang::Zh, Order) => "订单号",
            (Lang::En, Order) => "Order",
        }
    }
}

/// Each thing the page says.
#[derive(Debug, Clone, Copy)]
pub enum Key {
    Title,
    PayWithin,
    ChooseWay,
    Alipay,
    WechatPay,
    /// The simulated channel (an order paid through the API with `sim`).
    Simulated,
    ScanWith,
    LongPress,
    Waiting,
    ContinueAt,
    Paid,
    PaidText,
    BackToShop,
    Closed,
    ClosedText,
    Cancelled,
    Failed,
    Refused,
    NoWay,
    Invalid,
    InvalidText,
    Busy,
    Order,
}
