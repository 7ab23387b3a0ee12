//! Which webhook URLs payq calls (docs/security.md): `http`/`https` only, no userinfo, and
//! never a host that is, or resolves to, a loopback, private, link-local, shared,
//! multicast or unspecified address (IPv4-mapped IPv6 forms included), unless
//! `webhook.allow_private` is set for local development and tests. The rule is checked when
//! a merchant sets its URL and again at every delivery against the addresses the name
//! resolves to then ([`GuardedResolver`]), so a name re-pointed at an internal address
//! after the check (DNS rebinding) reaches nothing.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Why a webhook URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlRefused {
    #[error("webhook_url must be an absolute http(s) URL")]
    NotHttp,
    #[error("webhook_url must not carry a user name or password")]
    Userinfo,
    #[error("webhook_url host {0} is not publicly routable (loopback, private, link-local or similar)")]
    Internal(String),
    #[error("webhook_url host {0} does not resolve")]
    Unresolvable(String),
}

/// Whether `ip` is an address a merchant endpoint may have: publicly routable.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    let shared = a == 100 && (64..128).contains(&b); // 100.64.0.0/10, carrier-grade NAT
    let this_network = a == 0; // 0.0.0.0/8
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || shared
        || this_network)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    let unique_local = first & 0xfe00 == 0xfc00; // fc00::/7
    let link_local = first & 0xffc0 == 0xfe80; // fe80::/10
    // ::a.b.c.d (IPv4-compatible, deprecated) carries an IPv4 address too.
    let compatible = ip.segments()[..6].iter().all(|s| *s == 0) && !ip.is_loopback() && !ip.is_unspecified();
    if compatible {
        let [.., a, b, c, d] = ip.octets();
        return is_public_v4(Ipv4Addr::new(a, b, c, d));
    }
    !(ip.is_loopback() || ip.is_unspecified() || ip.is_multicast() || unique_local || link_local)
}

/// A webhook URL whose form passed: http(s), no userinfo, a host.
struct Form {
    url: reqwest::Url,
    host: String,
    /// The host as an IP address, when it is one (the URL parser has already normalised
    /// IPv4 spellings such as 2130706433 and 0x7f000001).
    literal: Option<IpAddr>,
}

fn form(url: &str) -> Result<Form, UrlRefused> {
    let parsed = reqwest::Url::parse(url).map_err(|_| UrlRefused::NotHttp)?;
    if !matches!(parsed.scheme(), "http" | "https") || url.len() > 2048 {
        return Err(UrlRefused::NotHttp);
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(UrlRefused::Userinfo);
    }
    let host = parsed.host_str().ok_or(UrlRefused::NotHttp)?.to_owned();
    let literal = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().ok();
    Ok(Form { url: parsed, host, literal })
}

/// Checks the form of a webhook URL and, unless `allow_private`, that its host is public
/// (resolving a name). Returns the parsed URL.
pub async fn check(url: &str, allow_private: bool) -> Result<reqwest::Url, UrlRefused> {
    let Form { url, host, literal } = form(url)?;
    if allow_private {
        return Ok(url);
    }
    let port = url.port_or_known_default().unwrap_or(80);
    let addrs: Vec<IpAddr> = match literal {
        Some(ip) => vec![ip],
        None => match tokio::net::lookup_host((host.as_str(), port)).await {
            Ok(found) => found.map(|a| a.ip()).collect(),
            Err(_) => Vec::new(),
        },
    };
    if addrs.is_empty() {
        return Err(UrlRefused::Unresolvable(host));
    }
    if addrs.iter().any(|ip| !is_public(*ip)) {
        return Err(UrlRefused::Internal(host));
    }
    Ok(url)
}

/// The delivery-time check of a URL payq is about to call: its form and, for an IP
/// literal, the address (a name is checked by [`GuardedResolver`] when the client resolves
/// it, so it is not resolved twice).
pub fn check_form(url: &str, allow_private: bool) -> Result<(), UrlRefused> {
    let Form { host, literal, .. } = form(url)?;
    match literal {
        Some(ip) if !allow_private && !is_public(ip) => Err(UrlRefused::Internal(host)),
        _ => Ok(()),
    }
}

/// The webhook client's DNS resolver: resolves as usual, then refuses names that lead to a
/// non-public address, so the address checked is the address connected to.
pub struct GuardedResolver;

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if found.is_empty() || found.iter().any(|a| !is_public(a.ip())) {
                return Err(Box::new(UrlRefused::Internal(host)) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(found.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn internal_hosts_in_every_spelling_are_refused() {
        for url in [
            "http://127.0.0.1/h",
            "http://localhost:8080/h",
            "http://[::1]/h",
            "http://0.0.0.0/h",
            "http://2130706433/h",
            "http://0x7f000001/h",
            "http://10.1.2.3/h",
            "http://172.16.0.1/h",
            "http://192.168.1.1/h",
            "http://169.254.169.254/latest/meta-data",
            "http://100.64.0.1/h",
            "http://[::ffff:127.0.0.1]/h",
            "http://[::ffff:10.0.0.1]/h",
            "http://[fd00::1]/h",
            "http://[fe80::1]/h",
        ] {
            assert!(matches!(check(url, false).await, Err(UrlRefused::Internal(_))), "{url}");
        }
    }

    #[tokio::test]
    async fn form_is_checked_and_public_addresses_pass() {
        assert_eq!(check("ftp://example.com/", false).await, Err(UrlRefused::NotHttp));
        assert_eq!(check("not a url", false).await, Err(UrlRefused::NotHttp));
        assert_eq!(check("http://user:pass@93.184.215.14/h", false).await, Err(UrlRefused::Userinfo));
        assert_eq!(check("http://user@93.184.215.14/h", true).await, Err(UrlRefused::Userinfo));
        assert!(check("https://93.184.215.14/hook", false).await.is_ok());
        assert!(check("http://[2606:2800:21f:cb07:6820:80da:af6b:8b2c]/h", false).await.is_ok());
        assert!(check("http://127.0.0.1:9000/h", true).await.is_ok(), "allowed for local development");
    }

    proptest::proptest! {
        #[test]
        fn mapped_addresses_judge_like_their_ipv4(a: u8, b: u8, c: u8, d: u8) {
            let v4 = Ipv4Addr::new(a, b, c, d);
            proptest::prop_assert_eq!(is_public(IpAddr::V6(v4.to_ipv6_mapped())), is_public(IpAddr::V4(v4)));
        }
    }
}
