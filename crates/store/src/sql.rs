//! Statements with a variable number of values: the values travel as one JSON array bound
//! to one parameter, so the statement's text (and its prepared form in each connection's
//! statement cache) stays the same whatever their number.

/// Row keys as one JSON array (`[1,2,3]`), bound as a single parameter and read back with
/// `json_each` (SQLite) or `jsonb_array_elements_text` (PostgreSQL): one bound value
/// instead of one per row.
pub(crate) fn json_list(seqs: &[i64]) -> String {
    let mut out = String::with_capacity(seqs.len() * 8 + 2);
    out.push('[');
    for (i, seq) in seqs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&seq.to_string());
    }
    out.push(']');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_become_one_json_array() {
        assert_eq!(json_list(&[1, -2, 30]), "[1,-2,30]");
        assert_eq!(json_list(&[]), "[]");
    }
}
