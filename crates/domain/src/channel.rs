//! The payment channels payq knows, by name: the one place a new channel is added, so that
//! every `match` that must learn about it stops compiling until it does.

use crate::BillChannel;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A payment channel's name, as the API and the store spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChannelName {
    /// The built-in simulated channel (docs/channels.md, "The simulated channel").
    Sim,
    /// Alipay (支付宝).
    Alipay,
    /// WeChat Pay (微信支付) API v3.
    Wechatpay,
}

impl ChannelName {
    /// Every channel, the simulated one first.
    pub const ALL: [ChannelName; 3] = [ChannelName::Sim, ChannelName::Alipay, ChannelName::Wechatpay];

    /// The name in the API and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelName::Sim => "sim",
            ChannelName::Alipay => "alipay",
            ChannelName::Wechatpay => "wechatpay",
        }
    }

    /// The channel named `name`, if payq knows it.
    pub fn parse(name: &str) -> Option<ChannelName> {
        ChannelName::ALL.into_iter().find(|c| c.as_str() == name)
    }

    /// Whether this is a real channel: one that holds the buyer's money, is called once
    /// per payment start (docs/channels.md, "One call per payment start") and takes CNY.
    pub fn is_real(self) -> bool {
        self != ChannelName::Sim
    }
}

impl From<BillChannel> for ChannelName {
    fn from(c: BillChannel) -> ChannelName {
        match c {
            BillChannel::Alipay => ChannelName::Alipay,
            BillChannel::Wechatpay => ChannelName::Wechatpay,
        }
    }
}

/// A channel name payq does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown channel {0:?}")]
pub struct UnknownChannel(pub String);

impl std::str::FromStr for ChannelName {
    type Err = UnknownChannel;

    fn from_str(s: &str) -> Result<ChannelName, UnknownChannel> {
        ChannelName::parse(s).ok_or_else(|| UnknownChannel(s.chars().take(40).collect()))
    }
}

impl fmt::Display for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_match_serde() {
        for c in ChannelName::ALL {
            assert_eq!(ChannelName::parse(c.as_str()), Some(c));
            assert_eq!(serde_json::to_value(c).expect("serialize"), serde_json::json!(c.as_str()));
        }
        for bills in BillChannel::ALL {
            assert!(ChannelName::from(bills).is_real(), "{bills} has bills and is real");
        }
        assert_eq!(ChannelName::parse("Alipay"), None);
        assert_eq!(ChannelName::parse("stripe"), None);
    }
}
