//! The checkout link's token: who may open an order's checkout page, until when, and
//! where the buyer goes back to. `t=<expiry ms>.<merchant id>.<return URL, base64url>.<sig>`,
//! the signature an HMAC-SHA256 (under a key derived from the admin token) over the order
//! id and the rest, so a link opens one order's page, only until the order's deadline, and
//! cannot be altered.

use base64::Engine;
use payq_domain::{MerchantId, OrderId, Timestamp};

/// What a valid link says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub merchant_id: MerchantId,
    pub expires_at: Timestamp,
    pub return_url: Option<String>,
}

/// The key links are signed with, derived from the admin token (the same in every process).
pub fn key(admin_token: &str) -> String {
    payq_domain::crypto::sha256_hex(format!("payq checkout links:{admin_token}").as_bytes())
}

fn signed_part(order: &OrderId, merchant: &MerchantId, ret: &str) -> String {
    format!("checkout|{order}|{merchant}|{ret}")
}

/// The token of a link to `order`'s page.
pub fn token(key: &str, order: &OrderId, link: &Link) -> String {
    let ret = link
        .return_url
        .as_deref()
        .map(|r| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r))
        .unwrap_or_default();
    let exp = link.expires_at.millis();
    let sig = payq_domain::crypto::sign(key, exp, signed_part(order, &link.merchant_id, &ret).as_bytes());
    format!("{exp}.{}.{ret}.{sig}", link.merchant_id)
}

/// The link `token` stands for, if it is genuine, for `order`, and not expired at `now`.
pub fn verify(key: &str, order: &OrderId, token: &str, now: Timestamp) -> Option<Link> {
    let mut parts = token.split('.');
    let (exp, merchant, ret, sig) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let exp: i64 = exp.parse().ok()?;
    let merchant_id: MerchantId = merchant.parse().ok()?;
    let wanted = payq_domain::crypto::sign(key, exp, signed_part(order, &merchant_id, ret).as_bytes());
    if !payq_domain::crypto::constant_time_eq(&wanted, sig) || exp <= now.millis() {
        return None;
    }
    let return_url = match ret {
        "" => None,
        r => Some(String::from_utf8(base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(r).ok()?).ok()?),
    };
    Some(Link { merchant_id, expires_at: Timestamp::from_millis(exp), return_url })
}

/// The per-page form token: it ties a pay form to the link it was shown under.
pub fn form_token(key: &str, order: &OrderId, token: &str) -> String {
    payq_domain::crypto::sign(key, 0, format!("form|{order}|{token}").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_opens_its_order_until_its_expiry_and_cannot_be_altered() {
        let key = key("admin-token-for-tests");
        let order = OrderId::generate();
        let link = Link {
            merchant_id: MerchantId::generate(),
            expires_at: Timestamp::from_millis(2_000_000),
            return_url: Some("https://shop.example/done?x=1".into()),
        };
        let t = token(&key, &order, &link);
        assert_eq!(verify(&key, &order, &t, Timestamp::from_millis(1_999_999)), Some(link.clone()));
        assert_eq!(verify(&key, &order, &t, Timestamp::from_millis(2_000_000)), None, "expired");
        assert_eq!(verify(&key, &OrderId::generate(), &t, Timestamp::from_millis(0)), None, "another order");
        assert_eq!(verify("other", &order, &t, Timestamp::from_millis(0)), None, "another key");
        let later = t.replacen("2000000", "9000000", 1);
        assert_eq!(verify(&key, &order, &later, Timestamp::from_millis(0)), None, "a longer life");
        for junk in ["", "a.b.c.d", "1.2.3", "1.mch_x..ff.extra"] {
            assert_eq!(verify(&key, &order, junk, Timestamp::from_millis(0)), None, "{junk}");
        }
    }
}
