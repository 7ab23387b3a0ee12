//! A channel's trade bill (对账单) for one day, as rows payq can match against its own
//! payments and refunds: what each real channel's bill says, in one shape. The formats
//! and the matching rules are in docs/channels.md, "Reconciliation".

use std::fmt;

/// Whether a bill row is money taken or money given back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BillRowKind {
    Payment,
    Refund,
}

/// What the channel says became of a row's money.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BillRowStatus {
    /// The payment was taken, or the refund paid out.
    Succeeded,
    /// Anything else, in the channel's words (WeChat Pay `REVOKED`, a refund `PROCESSING`).
    Other(String),
}

impl BillRowStatus {
    /// The status as payq shows it in a discrepancy.
    pub fn as_str(&self) -> &str {
        match self {
            BillRowStatus::Succeeded => "succeeded",
            BillRowStatus::Other(s) => s,
        }
    }
}

/// One row of a channel's bill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillRow {
    pub kind: BillRowKind,
    /// The merchant order number payq sent: payq's payment id.
    pub out_trade_no: String,
    /// For a refund, the refund number payq sent: payq's refund id.
    pub out_refund_no: Option<String>,
    /// The channel's own reference (Alipay `trade_no`, WeChat Pay `transaction_id`).
    pub channel_txn_id: String,
    /// In minor units, always positive (a refund's amount is what was given back).
    pub amount: i64,
    /// The channel's fee for the row in minor units (positive: charged; a refund's fee is
    /// what the channel gave back of it).
    pub fee: i64,
    pub status: BillRowStatus,
}

/// A day's bill: its rows, and the file as the channel sent it (kept with the run).
#[derive(Debug, Clone)]
pub struct Bill {
    pub rows: Vec<BillRow>,
    /// The downloaded file, as downloaded (a zip, or gzip).
    pub raw: Vec<u8>,
}

/// Why a bill could not be had.
#[derive(Debug, thiserror::Error)]
pub enum BillError {
    /// The channel has not made the day's bill yet (WeChat Pay `NO_STATEMENT_EXIST`, Alipay
    /// `isp.bill_not_exist`): ask again later.
    #[error("the bill is not ready yet: {0}")]
    NotReady(String),
    /// The channel could not be asked or did not answer (retry).
    #[error("channel unavailable: {0}")]
    Unavailable(String),
    /// The channel refused the request for good.
    #[error("channel refused the bill request: {0}")]
    Refused(String),
    /// The file is not a bill payq can read (wrong format, bad digest, bad amount).
    #[error("malformed bill: {0}")]
    Malformed(String),
    /// The channel has no bills (the simulated channel).
    #[error("{0} has no bills")]
    Unsupported(payq_domain::ChannelName),
}

/// A yuan amount from a bill as minor units, exactly: `"20.00"` → `2000`, `"-350.00"` →
/// `-35000`, `"0.1"` → `10`. More than two decimals, exponents or overflow are refused.
pub fn yuan_to_minor(text: &str) -> Result<i64, BillError> {
    let bad =
        || BillError::Malformed(format!("amount {:?} is not a yuan amount", text.chars().take(32).collect::<String>()));
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || (unsigned.contains('.') && !digits(fraction)) || fraction.len() > 2 {
        return Err(bad());
    }
    let whole: i64 = whole.parse().map_err(|_| bad())?;
    let cents: i64 = format!("{fraction:0<2}").parse().map_err(|_| bad())?;
    let minor = whole.checked_mul(100).and_then(|w| w.checked_add(cents)).ok_or_else(bad)?;
    Ok(if negative { -minor } else { minor })
}

/// A fee from a bill as minor units, rounded half away from zero: WeChat Pay writes fees
/// with five decimals (`"0.05940"` → `6`), Alipay with two.
pub fn fee_to_minor(text: &str) -> Result<i64, BillError> {
    let bad =
        || BillError::Malformed(format!("fee {:?} is not a yuan amount", text.chars().take(32).collect::<String>()));
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || (unsigned.contains('.') && !digits(fraction)) || fraction.len() > 8 {
        return Err(bad());
    }
    let padded = format!("{fraction:0<8}");
    let (cents, rest) = padded.split_at(2);
    let whole: i64 = whole.parse().map_err(|_| bad())?;
    let cents: i64 = cents.parse().map_err(|_| bad())?;
    let round_up = rest.as_bytes().first().is_some_and(|d| *d >= b'5');
    let minor = whole.checked_mul(100).and_then(|w| w.checked_add(cents + i64::from(round_up))).ok_or_else(bad)?;
    Ok(if negative { -minor } else { minor })
}

impl fmt::Display for BillRowKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BillRowKind::Payment => "payment",
            BillRowKind::Refund => "refund",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuan_amounts_become_minor_units_exactly() {
        for (text, minor) in [("20.00", 2000), ("-350.00", -35000), ("0.1", 10), ("7", 700), ("0.01", 1)] {
            assert_eq!(yuan_to_minor(text).ok(), Some(minor), "{text}");
        }
        for bad in ["", "1.234", "1e3", "abc", "1.", "--1", "99999999999999999999"] {
            assert!(yuan_to_minor(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn fees_round_half_away_from_zero() {
        for (text, minor) in
            [("0.05940", 6), ("0.00000", 0), ("0.06", 6), ("-0.12", -12), ("0.00499", 0), ("1.00500", 101)]
        {
            assert_eq!(fee_to_minor(text).ok(), Some(minor), "{text}");
        }
        assert!(fee_to_minor("0.6%").is_err());
    }
}
