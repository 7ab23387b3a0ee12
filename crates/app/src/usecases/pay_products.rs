//! Which pay products each channel offers and what each needs from the pay request
//! (docs/channels.md, "Pay products"): checked before anything is written or sent, so a
//! product the channel does not offer, or a missing `payer` field, is a `400
//! validation_failed` naming the field and nothing reaches the channel.

use super::InputError;
use payq_channels::StartDetails;
use payq_domain::{ChannelName, Merchant, PayProduct};
use serde::Deserialize;

/// `payer` of a pay request: who pays, as the product needs it.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Payer {
    /// The buyer's openid under the app paid in (WeChat Pay `jsapi`, `mini_program`).
    #[schema(max_length = 128)]
    pub openid: Option<String>,
    /// The buyer's IP address as the shop's server saw it (WeChat Pay `h5`).
    #[schema(max_length = 45)]
    pub client_ip: Option<String>,
}

/// The products `channel` offers; the first is its default.
pub fn offered(channel: ChannelName) -> &'static [PayProduct] {
    use PayProduct::*;
    match channel {
        ChannelName::Sim => &[],
        ChannelName::Alipay => &[Qr, Web, Wap, App],
        ChannelName::Wechatpay => &[Native, Jsapi, MiniProgram, H5, App],
    }
}

fn failed(detail: String) -> InputError {
    InputError::OutOfBounds(detail)
}

/// Checks a real channel's pay request: the product (default: the channel's QR code), the
/// payer fields it needs, and `return_url`. Answers the product and the start details to
/// keep with the payment.
pub fn check(
    merchant: &Merchant,
    channel: ChannelName,
    product: Option<PayProduct>,
    payer: Option<Payer>,
    return_url: Option<String>,
) -> Result<(PayProduct, StartDetails), InputError> {
    let offered = offered(channel);
    let product =
        product.or_else(|| offered.first().copied()).ok_or_else(|| failed(format!("{channel} has no pay products")))?;
    if !offered.contains(&product) {
        let names: Vec<&str> = offered.iter().map(|p| p.as_str()).collect();
        return Err(failed(format!("product: {channel} does not offer {:?}; it offers {names:?}", product.as_str())));
    }
    let payer = payer.unwrap_or_default();
    let mut details = StartDetails::default();
    if matches!(product, PayProduct::Jsapi | PayProduct::MiniProgram) {
        let openid = payer
            .openid
            .filter(|o| !o.trim().is_empty())
            .ok_or_else(|| failed(format!("payer.openid: {channel} {} needs the buyer's openid", product.as_str())))?;
        if openid.len() > 128 || !openid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(failed("payer.openid must be up to 128 letters, digits, '-' and '_'".into()));
        }
        details.openid = Some(openid);
    }
    if product == PayProduct::MiniProgram
        && merchant.channels.wechatpay.as_ref().and_then(|w| w.mini_program_app_id.as_ref()).is_none()
    {
        return Err(failed(
            "product: mini_program needs the merchant's channels.wechatpay.mini_program_app_id (PATCH /v1/merchants/{id})"
                .into(),
        ));
    }
    if product == PayProduct::H5 {
        let ip = payer
            .client_ip
            .ok_or_else(|| failed("payer.client_ip: wechatpay h5 needs the buyer's IP address".into()))?;
        let ip: std::net::IpAddr =
            ip.trim().parse().map_err(|_| failed(format!("payer.client_ip: {ip:?} is not an IP address")))?;
        details.client_ip = Some(ip.to_string());
    }
    if let Some(url) = return_url {
        check_return_url(&url)?;
        details.return_url = Some(url);
    }
    Ok((product, details))
}

/// Checks a `return_url`: where a channel's page or payq's checkout sends the buyer back.
pub fn check_return_url(url: &str) -> Result<(), InputError> {
    let parsed = reqwest::Url::parse(url).ok().filter(|u| matches!(u.scheme(), "http" | "https"));
    if url.len() > 512 || parsed.is_none_or(|u| u.host().is_none() || !u.username().is_empty()) {
        return Err(failed(format!(
            "return_url must be an http(s) URL of up to 512 characters, got {:?}",
            url.chars().take(80).collect::<String>()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merchant(mini_program: bool) -> Merchant {
        let mut m = Merchant {
            id: payq_domain::MerchantId::generate(),
            name: "Tea".into(),
            webhook_url: None,
            webhook_events: None,
            settings: payq_domain::MerchantSettings::default(),
            channels: payq_domain::MerchantChannels::default(),
            created_at: payq_domain::Timestamp::now(),
        };
        if mini_program {
            m.channels.wechatpay = Some(payq_domain::WechatPayChannel {
                mch_id: "1".into(),
                app_id: "wx1".into(),
                serial_no: "1".into(),
                platform_serials: vec![],
                public_key_id: None,
                mini_program_app_id: Some("wxmini".into()),
                base_url: "http://127.0.0.1".into(),
            });
        }
        m
    }

    #[test]
    fn each_channel_offers_its_products_and_defaults_to_its_qr_code() {
        let m = merchant(true);
        assert_eq!(check(&m, ChannelName::Alipay, None, None, None).expect("qr").0, PayProduct::Qr);
        assert_eq!(check(&m, ChannelName::Wechatpay, None, None, None).expect("native").0, PayProduct::Native);
        for p in [PayProduct::Web, PayProduct::Wap, PayProduct::App] {
            assert_eq!(check(&m, ChannelName::Alipay, Some(p), None, None).expect("offered").0, p);
        }
        for (channel, p) in [
            (ChannelName::Alipay, PayProduct::Native),
            (ChannelName::Alipay, PayProduct::H5),
            (ChannelName::Wechatpay, PayProduct::Qr),
        ] {
            let e = check(&m, channel, Some(p), None, None).expect_err("not offered").to_string();
            assert!(e.starts_with("product:"), "{e}");
        }
    }

    #[test]
    fn products_need_their_payer_fields_and_a_web_return_url() {
        let m = merchant(false);
        let e =
            check(&m, ChannelName::Wechatpay, Some(PayProduct::Jsapi), None, None).expect_err("no openid").to_string();
        assert!(e.starts_with("payer.openid"), "{e}");
        let e = check(&m, ChannelName::Wechatpay, Some(PayProduct::H5), None, None).expect_err("no ip").to_string();
        assert!(e.starts_with("payer.client_ip"), "{e}");
        let bad_ip = Payer { client_ip: Some("300.1.1.1".into()), ..Payer::default() };
        assert!(check(&m, ChannelName::Wechatpay, Some(PayProduct::H5), Some(bad_ip), None).is_err());
        let e = check(
            &m,
            ChannelName::Wechatpay,
            Some(PayProduct::MiniProgram),
            Some(Payer { openid: Some("o1".into()), client_ip: None }),
            None,
        )
        .expect_err("no mini program")
        .to_string();
        assert!(e.contains("mini_program_app_id"), "{e}");
        let e = check(&m, ChannelName::Alipay, Some(PayProduct::Wap), None, Some("javascript:alert(1)".into()))
            .expect_err("url")
            .to_string();
        assert!(e.starts_with("return_url"), "{e}");
        let (_, details) = check(
            &m,
            ChannelName::Wechatpay,
            Some(PayProduct::H5),
            Some(Payer { openid: None, client_ip: Some(" 203.0.113.9 ".into()) }),
            Some("https://shop.example/paid".into()),
        )
        .expect("h5");
        assert_eq!(details.client_ip.as_deref(), Some("203.0.113.9"));
        assert_eq!(details.return_url.as_deref(), Some("https://shop.example/paid"));
    }
}
