//! The job kinds the store's own SQL names (`verify`, the console's order timeline). The
//! kinds belong to the application (`JobKind` in `crates/app/src/jobs.rs`); the store
//! cannot depend on it, so this list is checked from both sides: the test below finds
//! every kind spelled in the store's SQL here, and the application's tests find every kind
//! here among its `JobKind`s. A kind renamed or added in one place fails a test until the
//! other learns it.

/// Every job kind spelled in the store's SQL.
pub const JOB_KINDS_IN_SQL: [&str; 8] = [
    "payment.request",
    "payment.timeout",
    "payment.query",
    "payment.close",
    "refund.execute",
    "order.check",
    "order.ship_reminder",
    "webhook.deliver",
];

#[cfg(test)]
mod tests {
    use super::JOB_KINDS_IN_SQL;

    /// The quoted `'kind.name'` literals of a source file.
    fn quoted_kinds(source: &str) -> Vec<String> {
        source
            .split('\'')
            .skip(1)
            .step_by(2)
            .filter(|s| {
                let mut parts = s.split('.');
                matches!((parts.next(), parts.next(), parts.next()), (Some(a), Some(b), None)
                    if !a.is_empty() && !b.is_empty()
                        && s.chars().all(|c| c.is_ascii_lowercase() || c == '_' || c == '.'))
            })
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn every_kind_the_sql_names_is_listed() {
        let mut found = Vec::new();
        for source in [include_str!("verify.rs"), include_str!("console.rs")] {
            found.extend(quoted_kinds(source));
        }
        assert!(found.len() >= 8, "the SQL's kinds were read: {found:?}");
        for kind in found {
            assert!(JOB_KINDS_IN_SQL.contains(&kind.as_str()), "{kind} is in the store's SQL but not listed");
        }
    }
}
