//! Statements with a variable number of values: numbered placeholders (the `Any` driver's
//! query builder writes `?`, which PostgreSQL does not accept; `$N` works on both backends),
//! and JSON arrays bound as one parameter where there are many values.

use std::fmt::Write;

/// `$first, $first+1, …` (`n` of them).
pub(crate) fn placeholders(first: usize, n: usize) -> String {
    let mut out = String::with_capacity(n * 6);
    for i in 0..n {
        if i > 0 {
            out.push_str(", ");
        }
        let _ = write!(out, "${}", first + i);
    }
    out
}

/// `($first, …), (…)`: `rows` tuples of `cols` placeholders each.
pub(crate) fn value_rows(first: usize, rows: usize, cols: usize) -> String {
    let mut out = String::with_capacity(rows * cols * 6);
    for r in 0..rows {
        if r > 0 {
            out.push_str(", ");
        }
        out.push('(');
        out.push_str(&placeholders(first + r * cols, cols));
        out.push(')');
    }
    out
}

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
    fn numbers_run_on_across_rows() {
        assert_eq!(placeholders(3, 3), "$3, $4, $5");
        assert_eq!(value_rows(2, 2, 2), "($2, $3), ($4, $5)");
        assert_eq!(placeholders(1, 0), "");
        assert_eq!(json_list(&[1, -2, 30]), "[1,-2,30]");
        assert_eq!(json_list(&[]), "[]");
    }
}
