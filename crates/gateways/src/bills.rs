//! The local gateways' trade bills: each gateway writes down the money that really moved
//! (a payment taken, a refund paid out) as it happens, and builds a day's bill from that
//! in its channel's own format. Tests spoil a bill the way a real one can disagree with
//! payq: a row dropped, an amount changed, a bill not ready yet.

use payq_channels::bill::{BillRow, BillRowKind, BillRowStatus};
use std::collections::{HashMap, HashSet};

/// What a gateway's bills are made of, and how tests spoil them.
#[derive(Debug, Default)]
pub struct BillBook {
    /// Money that moved: when (unix ms) and the row it makes.
    entries: Vec<(i64, BillRow)>,
    /// Answer "not ready" to this many more bill requests.
    not_ready: u32,
    /// Rows left out of every bill, by merchant order number.
    dropped: HashSet<String>,
    /// Amounts the bill shows instead of the real ones, by merchant order number.
    amounts: HashMap<String, i64>,
    /// Bill requests answered so far (ready or not).
    requests: u32,
    /// Files handed out for download, by token.
    files: HashMap<String, Vec<u8>>,
    /// Hand out a file that is no bill (a truncated download).
    malformed: bool,
}

/// The channel's fee: 0.6 % of the amount, rounded to the fen.
pub fn fee_of(amount: i64) -> i64 {
    (amount * 6 + 500) / 1000
}

/// The calendar day of a unix-ms instant in China (`YYYY-MM-DD`), as the channels date
/// their bills.
pub fn china_date(at_ms: i64) -> String {
    let china = time::UtcOffset::from_hms(8, 0, 0).unwrap_or(time::UtcOffset::UTC);
    let at =
        time::OffsetDateTime::from_unix_timestamp(at_ms.div_euclid(1000)).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let d = at.to_offset(china).date();
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

impl BillBook {
    /// A payment of `amount` was taken now.
    pub fn paid(&mut self, out_trade_no: &str, txn_id: &str, amount: i64) {
        self.entries.push((
            payq_domain::Timestamp::now().millis(),
            BillRow {
                kind: BillRowKind::Payment,
                out_trade_no: out_trade_no.to_owned(),
                out_refund_no: None,
                channel_txn_id: txn_id.to_owned(),
                amount,
                fee: fee_of(amount),
                status: BillRowStatus::Succeeded,
            },
        ));
    }

    /// A refund of `amount` was paid out now.
    pub fn refunded(&mut self, out_trade_no: &str, out_refund_no: &str, refund_txn_id: &str, amount: i64) {
        self.entries.push((
            payq_domain::Timestamp::now().millis(),
            BillRow {
                kind: BillRowKind::Refund,
                out_trade_no: out_trade_no.to_owned(),
                out_refund_no: Some(out_refund_no.to_owned()),
                channel_txn_id: refund_txn_id.to_owned(),
                amount,
                fee: fee_of(amount),
                status: BillRowStatus::Succeeded,
            },
        ));
    }

    /// The rows of `date`'s bill, spoiled as the test asked.
    pub fn rows_for(&self, date: &str) -> Vec<BillRow> {
        self.entries
            .iter()
            .filter(|(at, row)| china_date(*at) == date && !self.dropped.contains(&row.out_trade_no))
            .map(|(_, row)| {
                let mut row = row.clone();
                if let Some(amount) = self.amounts.get(&row.out_trade_no) {
                    row.amount = *amount;
                }
                row
            })
            .collect()
    }

    /// Counts a bill request; true when it is to be answered "not ready".
    pub fn ask(&mut self) -> bool {
        self.requests += 1;
        if self.not_ready > 0 {
            self.not_ready -= 1;
            return true;
        }
        false
    }

    /// Keeps `file` for download (cut short, when told to hand out malformed files);
    /// answers its token.
    pub fn hand_out(&mut self, mut file: Vec<u8>) -> String {
        if self.malformed {
            file.truncate(file.len() / 2);
        }
        let token = payq_domain::crypto::random_hex(16);
        self.files.insert(token.clone(), file);
        token
    }

    /// Hands out files cut short (or whole again).
    pub fn set_malformed(&mut self, malformed: bool) {
        self.malformed = malformed;
    }

    /// The file handed out under `token`.
    pub fn file(&self, token: &str) -> Option<Vec<u8>> {
        self.files.get(token).cloned()
    }

    /// The next `n` bill requests are answered "not ready".
    pub fn set_not_ready(&mut self, n: u32) {
        self.not_ready = n;
    }

    /// Bills leave out the rows of `out_trade_no`.
    pub fn drop_trade(&mut self, out_trade_no: &str) {
        self.dropped.insert(out_trade_no.to_owned());
    }

    /// Bills show `amount` for the rows of `out_trade_no`.
    pub fn change_amount(&mut self, out_trade_no: &str, amount: i64) {
        self.amounts.insert(out_trade_no.to_owned(), amount);
    }

    /// Bill requests answered so far.
    pub fn requests(&self) -> u32 {
        self.requests
    }
}
