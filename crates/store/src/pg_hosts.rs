//! The servers a PostgreSQL URL names. Operators name a primary and its standbys the way
//! libpq reads them: `postgres://user@h1:5432,h2:5433/db?target_session_attrs=read-write`
//! (docs/operations.md, "Clustered services"). sqlx connects to one server, so payq splits
//! such a URL into one URL per server and finds the writable one itself (`primary.rs`).

use crate::StoreError;

/// `target_session_attrs` values payq accepts: it writes, so it needs a server that takes
/// writes, and with several hosts it always looks for one (as `read-write` does).
const WRITABLE_ATTRS: [&str; 3] = ["any", "read-write", "primary"];

/// One URL per server that `url` names, in its order (a URL naming one server is returned
/// as it is); `target_session_attrs` is checked and taken out (sqlx does not know it).
pub(crate) fn server_urls(url: &str) -> Result<Vec<String>, StoreError> {
    let unsupported = || StoreError::UnsupportedUrl(url.to_owned());
    let (scheme, rest) = url.split_once("://").ok_or_else(unsupported)?;
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let (userinfo, hosts) = match authority.rfind('@') {
        Some(at) => authority.split_at(at + 1),
        None => ("", authority),
    };
    let (path, query) = match tail.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (tail, None),
    };
    let mut kept = Vec::new();
    let mut attrs = None;
    for pair in query.into_iter().flat_map(|q| q.split('&')).filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("target_session_attrs", value)) => attrs = Some(value),
            _ => kept.push(pair),
        }
    }
    if let Some(value) = attrs.filter(|value| !WRITABLE_ATTRS.contains(value)) {
        return Err(StoreError::UnwritableSessionAttrs(value.to_owned()));
    }
    let hosts: Vec<&str> = hosts.split(',').collect();
    if hosts.len() == 1 && attrs.is_none() {
        return Ok(vec![url.to_owned()]);
    }
    if hosts.iter().any(|h| h.is_empty()) {
        return Err(unsupported());
    }
    let query = if kept.is_empty() { String::new() } else { format!("?{}", kept.join("&")) };
    Ok(hosts.iter().map(|host| format!("{scheme}://{userinfo}{host}{path}{query}")).collect())
}

#[cfg(test)]
mod tests {
    use super::server_urls;

    #[test]
    fn one_server_stays_as_it_is() {
        let url = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable";
        assert_eq!(server_urls(url).expect("a URL payq reads"), [url]);
        assert_eq!(
            server_urls("postgres:///test?host=/run/pg").expect("a URL payq reads"),
            ["postgres:///test?host=/run/pg"]
        );
    }

    #[test]
    fn several_servers_become_one_url_each_without_target_session_attrs() {
        let urls = server_urls(
            "postgresql://u:p%40w@h1:5441,h2,[::1]:5443/payq?target_session_attrs=read-write&application_name=payq",
        )
        .expect("a URL payq reads");
        assert_eq!(
            urls,
            [
                "postgresql://u:p%40w@h1:5441/payq?application_name=payq",
                "postgresql://u:p%40w@h2/payq?application_name=payq",
                "postgresql://u:p%40w@[::1]:5443/payq?application_name=payq",
            ]
        );
        assert_eq!(
            server_urls("postgres://h1,h2?target_session_attrs=primary").expect("a URL payq reads"),
            ["postgres://h1", "postgres://h2"]
        );
        assert_eq!(
            server_urls("postgres://h1/db?target_session_attrs=any").expect("a URL payq reads"),
            ["postgres://h1/db"]
        );
    }

    #[test]
    fn a_read_only_target_or_an_empty_host_is_refused() {
        for url in
            ["postgres://h1,h2/db?target_session_attrs=read-only", "postgres://h1/db?target_session_attrs=standby"]
        {
            assert!(matches!(server_urls(url), Err(crate::StoreError::UnwritableSessionAttrs(_))), "{url}");
        }
        assert!(matches!(server_urls("postgres://h1,,h2/db"), Err(crate::StoreError::UnsupportedUrl(_))));
        assert!(matches!(server_urls("h1,h2"), Err(crate::StoreError::UnsupportedUrl(_))));
    }
}
