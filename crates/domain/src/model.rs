//! payq's resources as the API returns them and as events carry them: merchants, orders,
//! payments, refunds, inventory and events.
//!
//! Amounts are minor units beside their currency; [`Order::amount`] and friends give them
//! back as [`Money`] for arithmetic.

use crate::event::EventType;
use crate::ids::{EventId, MerchantId, OrderId, PaymentId, RefundId};
use crate::money::{Currency, Money, MoneyError};
use crate::order::OrderStatus;
use crate::refund::RefundStatus;
use crate::settings::MerchantSettings;
use crate::timestamp::Timestamp;
use crate::{ChannelName, CloseReason};
use serde::{Deserialize, Serialize};

/// A merchant, without its secrets.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Merchant {
    pub id: MerchantId,
    pub name: String,
    pub webhook_url: Option<String>,
    /// The event types the webhook receives; `null` for every type.
    pub webhook_events: Option<Vec<crate::EventType>>,
    pub settings: MerchantSettings,
    /// The real payment channels the merchant has set up, without their secrets.
    pub channels: MerchantChannels,
    pub created_at: Timestamp,
}

/// A merchant's real payment channels as they may be shown: identifiers and gateways,
/// never keys.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct MerchantChannels {
    /// Alipay, when set up.
    pub alipay: Option<AlipayChannel>,
    /// WeChat Pay, when set up.
    pub wechatpay: Option<WechatPayChannel>,
}

/// A merchant's Alipay application, as it may be shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AlipayChannel {
    pub app_id: String,
    pub gateway_url: String,
}

/// A merchant's WeChat Pay account, as it may be shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WechatPayChannel {
    pub mch_id: String,
    pub app_id: String,
    /// The serial number of the merchant's API certificate.
    pub serial_no: String,
    /// The serial numbers of the platform certificates payq accepts signatures from
    /// (upper-case hex, without leading zeros).
    pub platform_serials: Vec<String>,
    /// The id of the WeChat Pay public key payq accepts signatures from (`PUB_KEY_ID_…`),
    /// if the merchant has one.
    #[serde(default)]
    pub public_key_id: Option<String>,
    /// The mini program's app id, for payments inside it (`mini_program`), if set up.
    #[serde(default)]
    pub mini_program_app_id: Option<String>,
    pub base_url: String,
}

impl Merchant {
    /// Whether the merchant's webhook receives events of `event_type`.
    pub fn wants(&self, event_type: &str) -> bool {
        self.webhook_events.as_ref().is_none_or(|events| events.iter().any(|e| e.as_str() == event_type))
    }
}

/// One line of an order: a SKU and how many.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderItem {
    pub sku: String,
    pub quantity: u32,
}

/// The status of one payment attempt at the channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    /// Sent (or about to be sent) to the channel; no final answer yet.
    Pending,
    Succeeded,
    Failed,
    /// Closed at the channel before it was paid.
    Closed,
}

impl PaymentStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Pending => "pending",
            PaymentStatus::Succeeded => "succeeded",
            PaymentStatus::Failed => "failed",
            PaymentStatus::Closed => "closed",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Succeeded, Self::Failed, Self::Closed].into_iter().find(|p| p.as_str() == s)
    }
}

/// One payment attempt on an order.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Payment {
    pub id: PaymentId,
    pub channel: ChannelName,
    pub channel_txn_id: Option<String>,
    pub status: PaymentStatus,
    pub failure_reason: Option<String>,
    /// How the buyer pays through a real channel; `null` for `sim`.
    pub product: Option<PayProduct>,
    /// What the buyer does next to pay through a real channel; `null` for `sim`.
    pub next_action: Option<NextAction>,
}

/// The buyer's next step to pay through a real channel (docs/channels.md, "Pay products").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum NextAction {
    /// Scan this QR code (its content) with the channel's app.
    QrCode { qr_code: String },
    /// Open this page (the channel's checkout page, signed).
    Redirect { url: String },
    /// Hand this signed order string to the Alipay app SDK (`alipay.trade.app.pay`).
    AlipayApp { order_string: String },
    /// Call WeChat's `requestPayment` (JSAPI, mini program) with these parameters.
    WechatJsapi {
        app_id: String,
        time_stamp: String,
        nonce_str: String,
        package: String,
        sign_type: String,
        pay_sign: String,
    },
    /// Hand these parameters to the WeChat app SDK (`PayReq`).
    WechatApp {
        app_id: String,
        partner_id: String,
        prepay_id: String,
        package: String,
        nonce_str: String,
        timestamp: String,
        sign: String,
    },
}

/// How the buyer pays through a channel: each channel offers some of these (docs/channels.md,
/// "Pay products").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PayProduct {
    /// Alipay: a QR code to scan (`alipay.trade.precreate`).
    Qr,
    /// Alipay: its checkout page on a desktop (`alipay.trade.page.pay`).
    Web,
    /// Alipay: its checkout page in a phone's browser (`alipay.trade.wap.pay`).
    Wap,
    /// Alipay or WeChat Pay: the shop's own app hands the payment to the channel's app.
    App,
    /// WeChat Pay: a QR code to scan (Native).
    Native,
    /// WeChat Pay: inside WeChat, on the shop's official account page (needs the payer's openid).
    Jsapi,
    /// WeChat Pay: inside the shop's mini program (needs the payer's openid).
    MiniProgram,
    /// WeChat Pay: in a phone's browser outside WeChat (needs the payer's IP address).
    H5,
}

impl PayProduct {
    /// Every product.
    pub const ALL: [PayProduct; 8] = [
        PayProduct::Qr,
        PayProduct::Web,
        PayProduct::Wap,
        PayProduct::App,
        PayProduct::Native,
        PayProduct::Jsapi,
        PayProduct::MiniProgram,
        PayProduct::H5,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            PayProduct::Qr => "qr",
            PayProduct::Web => "web",
            PayProduct::Wap => "wap",
            PayProduct::App => "app",
            PayProduct::Native => "native",
            PayProduct::Jsapi => "jsapi",
            PayProduct::MiniProgram => "mini_program",
            PayProduct::H5 => "h5",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<PayProduct> {
        PayProduct::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// A payment order.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Order {
    pub id: OrderId,
    pub merchant_id: MerchantId,
    pub merchant_order_no: String,
    pub status: OrderStatus,
    /// Minor units of `currency`.
    pub amount: i64,
    pub currency: Currency,
    /// Minor units refunded so far (succeeded refunds).
    pub amount_refunded: i64,
    pub description: Option<String>,
    pub customer_id: Option<String>,
    pub items: Vec<OrderItem>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub paid_at: Option<Timestamp>,
    pub shipped_at: Option<Timestamp>,
    pub closed_at: Option<Timestamp>,
    pub cancelled_at: Option<Timestamp>,
    #[schema(value_type = Option<String>)]
    pub close_reason: Option<CloseReason>,
    pub carrier: Option<String>,
    pub tracking_no: Option<String>,
    /// The latest payment attempt.
    pub payment: Option<Payment>,
    pub ship_reminders_sent: u32,
    /// When the post-payment check took the items from stock; not part of the API.
    #[serde(skip)]
    pub checked_at: Option<Timestamp>,
    /// Compare-and-set version; not part of the API.
    #[serde(skip)]
    pub version: i64,
}

impl Order {
    /// The order amount as money.
    pub fn amount(&self) -> Result<Money, MoneyError> {
        Money::new(self.amount, self.currency)
    }

    /// The amount refunded so far as money.
    pub fn refunded(&self) -> Result<Money, MoneyError> {
        Money::from_stored(self.amount_refunded, self.currency)
    }
}

/// A refund of part or all of an order's payment.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Refund {
    pub id: RefundId,
    pub order_id: OrderId,
    pub merchant_id: MerchantId,
    pub amount: i64,
    pub currency: Currency,
    pub reason: Option<String>,
    pub status: RefundStatus,
    /// When the refund executes unless approved or rejected first.
    pub execute_at: Timestamp,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub failure_reason: Option<String>,
    #[serde(skip)]
    pub version: i64,
}

/// Stock of one SKU.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InventoryLevel {
    pub sku: String,
    pub available: i64,
}

/// An event of a merchant's event log.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Event {
    pub id: EventId,
    #[serde(rename = "type")]
    pub event_type: EventType,
    pub created_at: String,
    pub merchant_id: MerchantId,
    /// `{order}` and, where relevant, `{refund}`, as the API returns them.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}
