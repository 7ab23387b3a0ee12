//! WeChat Pay's trade bill: `GET /v3/bill/tradebill?bill_date=…&bill_type=ALL&tar_type=GZIP`
//! answers (signed) a `download_url` and the file's `SHA1`; the file, fetched with a signed
//! request and an unsigned answer, is gzip of UTF-8 CSV: a header, one row per payment
//! (`SUCCESS`, `REVOKED`) or refund (`REFUND`), every field prefixed with a backtick, then a
//! summary header (`总交易单数,…`) and its row. Amounts are yuan, fees have five decimals.
//! The format is in docs/channels.md, "Reconciliation".

use crate::bill::{BillError, BillRow, BillRowKind, BillRowStatus, fee_to_minor, yuan_to_minor};
use std::io::Read;

const TXN_ID: &str = "微信订单号";
const OUT_TRADE_NO: &str = "商户订单号";
const TRADE_STATE: &str = "交易状态";
const SETTLEMENT_AMOUNT: &str = "应结订单金额";
const REFUND_ID: &str = "微信退款单号";
const OUT_REFUND_NO: &str = "商户退款单号";
const REFUND_AMOUNT: &str = "退款金额";
const REFUND_STATUS: &str = "退款状态";
const FEE: &str = "手续费";
const ORDER_AMOUNT: &str = "订单金额";
const APPLIED_REFUND_AMOUNT: &str = "申请退款金额";
/// The summary section's first column.
const SUMMARY: &str = "总交易单数";

/// The columns of an `ALL` bill, in WeChat Pay's order.
pub const ALL_COLUMNS: [&str; 27] = [
    "交易时间",
    "公众账号ID",
    "商户号",
    "特约商户号",
    "设备号",
    TXN_ID,
    OUT_TRADE_NO,
    "用户标识",
    "交易类型",
    TRADE_STATE,
    "付款银行",
    "货币种类",
    SETTLEMENT_AMOUNT,
    "代金券金额",
    REFUND_ID,
    OUT_REFUND_NO,
    REFUND_AMOUNT,
    "充值券退款金额",
    "退款类型",
    REFUND_STATUS,
    "商品名称",
    "商户数据包",
    FEE,
    "费率",
    ORDER_AMOUNT,
    APPLIED_REFUND_AMOUNT,
    "费率备注",
];

/// The largest bill payq unpacks (a guard against gzip bombs).
const MAX_BILL_BYTES: u64 = 256 * 1024 * 1024;

/// The bill file as downloaded (gzip, or plain text when the channel sent it so), checked
/// against the `SHA1` the bill request answered (of the bill itself, unpacked; a digest of
/// the gzip file is accepted too), and its rows.
pub fn parse_bill_file(file: &[u8], sha1_hex: &str) -> Result<Vec<BillRow>, BillError> {
    let text = if file.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(file)
            .take(MAX_BILL_BYTES)
            .read_to_end(&mut out)
            .map_err(|e| BillError::Malformed(format!("the WeChat Pay bill is not valid gzip: {e}")))?;
        out
    } else {
        file.to_vec()
    };
    let wanted = sha1_hex.trim().to_ascii_lowercase();
    if sha1_of(&text) != wanted && sha1_of(file) != wanted {
        return Err(BillError::Malformed(format!(
            "the WeChat Pay bill's SHA1 is {}, not the {wanted} its bill request gave",
            sha1_of(&text)
        )));
    }
    let text = String::from_utf8(text).map_err(|_| BillError::Malformed("the WeChat Pay bill is not UTF-8".into()))?;
    parse_bill_text(&text)
}

/// Lower-case hex SHA1.
pub fn sha1_of(bytes: &[u8]) -> String {
    use sha1::Digest;
    hex::encode(sha1::Sha1::digest(bytes))
}

/// The rows of a bill's text.
pub fn parse_bill_text(text: &str) -> Result<Vec<BillRow>, BillError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(text.as_bytes());
    let mut records = reader.records();
    let header: Vec<String> = match records.next() {
        Some(Ok(h)) => h.iter().map(|f| field(f).to_owned()).collect(),
        _ => return Err(BillError::Malformed("the WeChat Pay bill is empty".into())),
    };
    if !header.iter().any(|c| c == OUT_TRADE_NO) {
        return Err(BillError::Malformed(format!("the WeChat Pay bill's header has no {OUT_TRADE_NO:?}")));
    }
    let mut rows = Vec::new();
    let mut summary_count: Option<usize> = None;
    while let Some(record) = records.next() {
        let record =
            record.map_err(|e| BillError::Malformed(format!("WeChat Pay bill line {}: {e}", rows.len() + 2)))?;
        let fields: Vec<&str> = record.iter().map(field).collect();
        if fields.iter().all(|f| f.is_empty()) {
            continue;
        }
        if fields.first() == Some(&SUMMARY) {
            let totals = records
                .next()
                .and_then(Result::ok)
                .ok_or_else(|| BillError::Malformed("the WeChat Pay bill's summary has no row".into()))?;
            let count = totals.get(0).map(field).unwrap_or_default();
            summary_count =
                Some(count.parse().map_err(|_| BillError::Malformed(format!("the summary's trade count {count:?}")))?);
            break;
        }
        rows.push(row(&header, &fields).map_err(|e| match e {
            BillError::Malformed(why) => BillError::Malformed(format!("WeChat Pay bill row {}: {why}", rows.len() + 1)),
            other => other,
        })?);
    }
    match summary_count {
        Some(n) if n == rows.len() => Ok(rows),
        Some(n) => Err(BillError::Malformed(format!("the summary counts {n} rows, the bill has {}", rows.len()))),
        None => Err(BillError::Malformed(format!("the WeChat Pay bill has no summary ({SUMMARY:?})"))),
    }
}

/// A field without the backtick WeChat Pay puts before every value.
fn field(raw: &str) -> &str {
    raw.trim().strip_prefix('`').unwrap_or(raw.trim()).trim()
}

fn row(columns: &[String], fields: &[&str]) -> Result<BillRow, BillError> {
    let find = |name: &str| columns.iter().position(|c| c == name).map(|i| fields.get(i).copied().unwrap_or_default());
    let get = |name: &str| find(name).ok_or_else(|| BillError::Malformed(format!("the header has no column {name:?}")));
    // The order's whole amount when the bill has it (coupons without a top-up are taken
    // off the settlement amount), else the settlement amount.
    let amount_of = |whole: &str, settled: &str| -> Result<i64, BillError> {
        match find(whole).filter(|a| !a.is_empty()) {
            Some(a) => yuan_to_minor(a),
            None => yuan_to_minor(get(settled)?),
        }
    };
    let fee = match get(FEE)? {
        "" => 0,
        fee => fee_to_minor(fee)?,
    };
    let out_trade_no = get(OUT_TRADE_NO)?.to_owned();
    if out_trade_no.is_empty() {
        return Err(BillError::Malformed("a row without a merchant order number".into()));
    }
    let (kind, amount, out_refund_no, status, txn) = match get(TRADE_STATE)? {
        "REFUND" => {
            let status = match get(REFUND_STATUS)? {
                "SUCCESS" => BillRowStatus::Succeeded,
                other => BillRowStatus::Other(other.to_owned()),
            };
            let no = get(OUT_REFUND_NO)?.to_owned();
            let amount = amount_of(APPLIED_REFUND_AMOUNT, REFUND_AMOUNT)?;
            (BillRowKind::Refund, amount, Some(no).filter(|n| !n.is_empty()), status, get(REFUND_ID)?)
        }
        "SUCCESS" => (
            BillRowKind::Payment,
            amount_of(ORDER_AMOUNT, SETTLEMENT_AMOUNT)?,
            None,
            BillRowStatus::Succeeded,
            get(TXN_ID)?,
        ),
        state @ ("REVOKED" | "CLOSED" | "NOTPAY" | "PAYERROR") => (
            BillRowKind::Payment,
            amount_of(ORDER_AMOUNT, SETTLEMENT_AMOUNT)?,
            None,
            BillRowStatus::Other(state.to_owned()),
            get(TXN_ID)?,
        ),
        other => return Err(BillError::Malformed(format!("unknown trade state {other:?}"))),
    };
    Ok(BillRow {
        kind,
        out_trade_no,
        out_refund_no,
        channel_txn_id: txn.to_owned(),
        amount: amount.abs(),
        fee: fee.abs(),
        status,
    })
}

/// A bill's text as WeChat Pay writes it (`ALL`), for the local gateway and the tests.
pub fn write_bill_text(app_id: &str, mch_id: &str, date: &str, rows: &[BillRow]) -> String {
    let line = |cells: &[String]| cells.iter().map(|c| format!("`{c}")).collect::<Vec<_>>().join(",");
    let yuan = crate::alipay::protocol::yuan;
    let mut out = ALL_COLUMNS.join(",");
    out.push('\n');
    let (mut paid, mut refunded, mut fees) = (0i64, 0i64, 0i64);
    for r in rows {
        let fee = format!("{}.{:05}", r.fee / 100, (r.fee % 100) * 1000);
        let (state, settle, refund_id, refund_no, refund, refund_status, fee, total, applied) = match r.kind {
            BillRowKind::Payment => {
                paid += r.amount;
                fees += r.fee;
                let state = match &r.status {
                    BillRowStatus::Succeeded => "SUCCESS".to_owned(),
                    BillRowStatus::Other(s) => s.clone(),
                };
                (
                    state,
                    yuan(r.amount),
                    "0".into(),
                    "0".into(),
                    "0.00".into(),
                    String::new(),
                    fee,
                    yuan(r.amount),
                    "0.00".into(),
                )
            }
            BillRowKind::Refund => {
                refunded += r.amount;
                fees -= r.fee;
                let status = match &r.status {
                    BillRowStatus::Succeeded => "SUCCESS".to_owned(),
                    BillRowStatus::Other(s) => s.clone(),
                };
                (
                    "REFUND".to_owned(),
                    "0.00".into(),
                    r.channel_txn_id.clone(),
                    r.out_refund_no.clone().unwrap_or_default(),
                    yuan(r.amount),
                    status,
                    format!("-{fee}"),
                    "0.00".into(),
                    yuan(r.amount),
                )
            }
        };
        let txn = match r.kind {
            BillRowKind::Payment => r.channel_txn_id.clone(),
            BillRowKind::Refund => format!("4200{}", r.out_trade_no.trim_start_matches("pay_")),
        };
        out.push_str(&line(&[
            format!("{date} 10:00:00"),
            app_id.into(),
            mch_id.into(),
            "0".into(),
            String::new(),
            txn,
            r.out_trade_no.clone(),
            "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o".into(),
            "NATIVE".into(),
            state,
            "OTHERS".into(),
            "CNY".into(),
            settle,
            "0.00".into(),
            refund_id,
            refund_no,
            refund,
            "0.00".into(),
            if r.kind == BillRowKind::Refund { "ORIGINAL".into() } else { String::new() },
            refund_status,
            "payq".into(),
            String::new(),
            fee,
            "0.60%".into(),
            total,
            applied,
            String::new(),
        ]));
        out.push('\n');
    }
    out.push_str("总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额\n");
    let fees = format!("{}{}.{:05}", if fees < 0 { "-" } else { "" }, fees.abs() / 100, (fees.abs() % 100) * 1000);
    out.push_str(&line(&[
        rows.len().to_string(),
        yuan(paid),
        yuan(refunded),
        "0.00".into(),
        fees,
        yuan(paid),
        yuan(refunded),
    ]));
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// An `ALL` bill in WeChat Pay's format (a payment and a refund, as WeChat Pay's own
    /// documentation and SDK tests show them).
    const BILL: &str = "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注
`2026-12-03 04:21:23,`wx2421b1c4370ec43b,`10000100,`0,`1000,`4200000305742026120303387128253,`pay_0190aaaa,`oUpF8uMuAJO_M2pxb1Q9zNjWeS6o,`JSAPI,`SUCCESS,`CMC,`CNY,`9.90,`0.00,`0,`0,`0.00,`0.00,`,`,`测试商品,`attach-data,`0.05940,`0.60%,`9.90,`0.00,`
`2026-12-03 11:00:00,`wx2421b1c4370ec43b,`10000100,`0,`,`4200000305742026120303387128254,`pay_0190bbbb,`oUpF8uMuAJO_M2pxb1Q9zNjWeS6o,`NATIVE,`REFUND,`OTHERS,`CNY,`0.00,`0.00,`50000001,`ref_0190cccc,`3.50,`0.00,`ORIGINAL,`SUCCESS,`测试商品,`,`-0.02100,`0.60%,`0.00,`3.50,`
总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额
`2,`9.90,`3.50,`0.00,`0.03840,`9.90,`3.50
";

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(bytes).expect("gzip");
        enc.finish().expect("gzip")
    }

    #[test]
    fn reads_backticked_rows_until_the_summary_and_checks_the_digest() {
        let rows = parse_bill_file(&gzip(BILL.as_bytes()), &sha1_of(BILL.as_bytes()).to_uppercase()).expect("parses");
        assert_eq!(
            rows[0],
            BillRow {
                kind: BillRowKind::Payment,
                out_trade_no: "pay_0190aaaa".into(),
                out_refund_no: None,
                channel_txn_id: "4200000305742026120303387128253".into(),
                amount: 990,
                fee: 6,
                status: BillRowStatus::Succeeded,
            }
        );
        assert_eq!(rows[1].kind, BillRowKind::Refund);
        assert_eq!((rows[1].amount, rows[1].fee), (350, 2));
        assert_eq!(rows[1].out_refund_no.as_deref(), Some("ref_0190cccc"));
        assert_eq!(rows[1].channel_txn_id, "50000001");
    }

    #[test]
    fn what_the_gateway_writes_reads_back() {
        let rows = vec![
            BillRow {
                kind: BillRowKind::Payment,
                out_trade_no: "pay_1".into(),
                out_refund_no: None,
                channel_txn_id: "4200001".into(),
                amount: 12345,
                fee: 74,
                status: BillRowStatus::Succeeded,
            },
            BillRow {
                kind: BillRowKind::Refund,
                out_trade_no: "pay_1".into(),
                out_refund_no: Some("ref_1".into()),
                channel_txn_id: "5030001".into(),
                amount: 100,
                fee: 1,
                status: BillRowStatus::Succeeded,
            },
        ];
        let text = write_bill_text("wx1", "1900", "2026-12-03", &rows);
        assert_eq!(parse_bill_text(&text).expect("parses"), rows);
    }

    #[test]
    fn a_malformed_bill_is_refused_with_a_clear_error() {
        let err = parse_bill_file(&gzip(BILL.as_bytes()), &"0".repeat(40)).expect_err("digest");
        assert!(err.to_string().contains("SHA1"), "{err}");
        let cut = BILL.split("总交易单数").next().unwrap_or_default();
        let err = parse_bill_text(cut).expect_err("no summary");
        assert!(err.to_string().contains("no summary"), "{err}");
        let miscounted = BILL.replace("`2,`9.90", "`3,`9.90");
        let err = parse_bill_text(&miscounted).expect_err("count");
        assert!(err.to_string().contains("counts 3 rows"), "{err}");
        let bad_amount = BILL.replace("`0.60%,`9.90,", "`0.60%,`9.9O,");
        let err = parse_bill_text(&bad_amount).expect_err("amount");
        assert!(err.to_string().contains("row 1") && err.to_string().contains("9.9O"), "{err}");
        let err = parse_bill_file(b"\x1f\x8bnot gzip", "x").expect_err("gzip");
        assert!(err.to_string().contains("gzip"), "{err}");
    }
}
