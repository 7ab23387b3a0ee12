//! Alipay's trade bill: `alipay.data.dataservice.bill.downloadurl.query` (`bill_type`
//! `trade`) answers a short-lived URL to a zip of GBK-encoded CSV files, a detail file
//! (`…_业务明细.csv`) and a summary (`…_业务明细(汇总).csv`). The detail file starts and ends
//! with `#` comment lines; its header names the columns, and values may carry a trailing
//! tab. Rows are `交易` (a payment) or `退款` (a refund, negative amounts). The format is in
//! docs/channels.md, "Reconciliation".

use crate::bill::{BillError, BillRow, BillRowKind, BillRowStatus, fee_to_minor, yuan_to_minor};
use std::io::Read;

/// The detail file's first column, by which its header line is known.
const TRADE_NO: &str = "支付宝交易号";
const OUT_TRADE_NO: &str = "商户订单号";
const BUSINESS_TYPE: &str = "业务类型";
const AMOUNT: &str = "订单金额（元）";
const REFUND_REQUEST_NO: &str = "退款批次号/请求号";
const FEE: &str = "服务费（元）";

/// The largest detail file payq reads out of a bill zip (a guard against zip bombs).
const MAX_DETAIL_BYTES: u64 = 256 * 1024 * 1024;

/// The rows of a bill zip as Alipay sends it.
pub fn parse_bill_zip(zip_bytes: &[u8]) -> Result<Vec<BillRow>, BillError> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip_bytes))
        .map_err(|e| BillError::Malformed(format!("the Alipay bill is not a zip: {e}")))?;
    // The entries' names are GBK without zip's UTF-8 flag in Alipay's files, so the detail
    // file is known by its header rather than its name.
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(|e| BillError::Malformed(format!("bill zip entry {i}: {e}")))?;
        if entry.is_dir() {
            continue;
        }
        let mut raw = Vec::new();
        (&mut entry)
            .take(MAX_DETAIL_BYTES)
            .read_to_end(&mut raw)
            .map_err(|e| BillError::Malformed(format!("bill zip entry {i}: {e}")))?;
        let text = decode_gbk(&raw);
        if has_detail_header(&text) {
            return parse_detail_csv(&text);
        }
    }
    Err(BillError::Malformed(format!("the Alipay bill zip has no detail file (no line starting {TRADE_NO:?})")))
}

/// Text in GBK (Alipay's encoding), or UTF-8 with a BOM.
pub fn decode_gbk(raw: &[u8]) -> String {
    if let Some(utf8) = raw.strip_prefix(b"\xEF\xBB\xBF") {
        return String::from_utf8_lossy(utf8).into_owned();
    }
    let (text, _, _) = encoding_rs::GBK.decode(raw);
    text.into_owned()
}

fn has_detail_header(text: &str) -> bool {
    text.lines().any(|l| l.trim_start().starts_with(TRADE_NO))
}

/// The rows of the detail file's text (decoded).
pub fn parse_detail_csv(text: &str) -> Result<Vec<BillRow>, BillError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .comment(Some(b'#'))
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let mut header: Option<Vec<String>> = None;
    let mut rows = Vec::new();
    for (line, record) in reader.records().enumerate() {
        let record = record.map_err(|e| BillError::Malformed(format!("Alipay bill line {}: {e}", line + 1)))?;
        let fields: Vec<&str> = record.iter().map(|f| f.trim_matches(|c: char| c.is_whitespace())).collect();
        if fields.iter().all(|f| f.is_empty()) {
            continue;
        }
        let Some(columns) = &header else {
            if fields.first() == Some(&TRADE_NO) {
                header = Some(fields.iter().map(|f| (*f).to_owned()).collect());
            }
            continue;
        };
        rows.push(row(columns, &fields).map_err(|e| match e {
            BillError::Malformed(why) => BillError::Malformed(format!("Alipay bill row {}: {why}", rows.len() + 1)),
            other => other,
        })?);
    }
    if header.is_none() {
        return Err(BillError::Malformed(format!("the Alipay bill has no header line starting {TRADE_NO:?}")));
    }
    Ok(rows)
}

fn row(columns: &[String], fields: &[&str]) -> Result<BillRow, BillError> {
    let get = |name: &str| -> Result<&str, BillError> {
        let i = columns
            .iter()
            .position(|c| c == name)
            .ok_or_else(|| BillError::Malformed(format!("the header has no column {name:?}")))?;
        Ok(fields.get(i).copied().unwrap_or_default())
    };
    let amount = yuan_to_minor(get(AMOUNT)?)?;
    let fee = match get(FEE)? {
        "" => 0,
        fee => fee_to_minor(fee)?.abs(),
    };
    let kind = match get(BUSINESS_TYPE)? {
        "交易" => BillRowKind::Payment,
        "退款" => BillRowKind::Refund,
        other => return Err(BillError::Malformed(format!("unknown business type {other:?}"))),
    };
    let out_trade_no = get(OUT_TRADE_NO)?.to_owned();
    if out_trade_no.is_empty() {
        return Err(BillError::Malformed("a row without a merchant order number".into()));
    }
    let out_refund_no = match kind {
        BillRowKind::Payment => None,
        BillRowKind::Refund => Some(get(REFUND_REQUEST_NO)?.to_owned()).filter(|n| !n.is_empty()),
    };
    Ok(BillRow {
        kind,
        out_trade_no,
        out_refund_no,
        channel_txn_id: get(TRADE_NO)?.to_owned(),
        amount: amount.abs(),
        fee,
        // The trade bill lists money that moved: every row succeeded.
        status: BillRowStatus::Succeeded,
    })
}

/// A detail file's text as Alipay writes it, for the local gateway and the tests: one
/// `(trade_no, out_trade_no, kind, amount, refund request no, fee)` per row.
pub fn write_detail_csv(account: &str, date: &str, rows: &[BillRow]) -> String {
    let mut out = String::new();
    out.push_str("#支付宝业务明细查询\n");
    out.push_str(&format!("#账号：[{account}]\n"));
    out.push_str(&format!("#起始日期：[{date} 00:00:00]   终止日期：[{date} 23:59:59]\n"));
    out.push_str("#-----------------------------------------业务明细列表----------------------------------------\n");
    out.push_str(&format!(
        "{TRADE_NO},{OUT_TRADE_NO},{BUSINESS_TYPE},商品名称,创建时间,完成时间,门店编号,门店名称,操作员,终端号,对方账户,\
         {AMOUNT},商家实收（元）,支付宝红包（元）,集分宝（元）,支付宝优惠（元）,商家优惠（元）,券核销金额（元）,券名称,\
         商家红包消费金额（元）,卡消费金额（元）,{REFUND_REQUEST_NO},{FEE},分润（元）,备注\n"
    ));
    for r in rows {
        let (kind, sign, fee_sign) = match r.kind {
            BillRowKind::Payment => ("交易", "", "-"),
            BillRowKind::Refund => ("退款", "-", ""),
        };
        let amount = format!("{sign}{}", crate::alipay::protocol::yuan(r.amount));
        let fee = format!("{fee_sign}{}", crate::alipay::protocol::yuan(r.fee));
        out.push_str(&format!(
            "{}\t,{}\t,{kind}\t,payq,{date} 10:00:00,{date} 10:00:05,\t,\t,\t,\t,*买(138****0000)\t,{amount},{amount},\
             0.00,0.00,0.00,0.00,0.00,,0.00\t,0.00,{}\t,{fee},0.00,\n",
            r.channel_txn_id,
            r.out_trade_no,
            r.out_refund_no.as_deref().unwrap_or_default(),
        ));
    }
    out.push_str("#-----------------------------------------业务明细列表结束------------------------------------\n");
    out.push_str(&format!("#交易合计：{}笔\n", rows.len()));
    out.push_str(&format!("#导出时间：[{date} 23:59:59]\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A detail file as Alipay writes it (columns, tabs and comment lines from Alipay's
    /// documented sample), then encoded as Alipay sends it.
    const DETAIL: &str = "#支付宝业务明细查询
#账号：[20885212319120680156]
#起始日期：[2026年12月03日 00:00:00]   终止日期：[2026年12月04日 00:00:00]
#-----------------------------------------业务明细列表----------------------------------------
支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,操作员,终端号,对方账户,订单金额（元）,商家实收（元）,支付宝红包（元）,集分宝（元）,支付宝优惠（元）,商家优惠（元）,券核销金额（元）,券名称,商家红包消费金额（元）,卡消费金额（元）,退款批次号/请求号,服务费（元）,分润（元）,备注
2026120321001004720299453898\t,pay_0190aaaa\t,交易\t,支付宝APP支付,2026-12-03 00:06:14,2026-12-03 00:06:15,\t,\t,\t,\t,*杨(137****2600)\t,20.00,20.00,0.00,0.00,0.00,0.00,0.00,,0.00\t,0.00,\t,-0.12,0.00,挂号付费
2026120321001004720299453899\t,pay_0190bbbb\t,退款\t,支付宝APP支付,2026-12-03 11:00:00,2026-12-03 11:00:05,\t,\t,\t,\t,*杨(137****2600)\t,-3.50,-3.50,0.00,0.00,0.00,0.00,0.00,,0.00\t,0.00,ref_0190cccc\t,0.02,0.00,
#-----------------------------------------业务明细列表结束------------------------------------
#交易合计：1笔，商家实收共20.00元
#退款合计：1笔，商家实收退款共-3.50元
#导出时间：[2026年12月04日 10:11:12]
";

    fn zipped(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut out = std::io::Cursor::new(Vec::new());
        {
            let mut zip = zip::ZipWriter::new(&mut out);
            for (name, content) in files {
                zip.start_file(*name, zip::write::SimpleFileOptions::default()).expect("zip entry");
                zip.write_all(content).expect("zip write");
            }
            zip.finish().expect("zip");
        }
        out.into_inner()
    }

    fn gbk(text: &str) -> Vec<u8> {
        encoding_rs::GBK.encode(text).0.into_owned()
    }

    #[test]
    fn reads_the_detail_file_of_a_gbk_zip_skipping_comments_and_the_summary() {
        let summary = gbk("#支付宝业务汇总查询\n门店编号,门店名称,交易订单总笔数,退款订单总笔数\n\t,\t,1,1\n");
        let zip = zipped(&[
            ("20885212319120680156_20261203_业务明细(汇总).csv", summary),
            ("20885212319120680156_20261203_业务明细.csv", gbk(DETAIL)),
        ]);
        let rows = parse_bill_zip(&zip).expect("parses");
        assert_eq!(rows.len(), 2);
        assert_eq!(
            rows[0],
            BillRow {
                kind: BillRowKind::Payment,
                out_trade_no: "pay_0190aaaa".into(),
                out_refund_no: None,
                channel_txn_id: "2026120321001004720299453898".into(),
                amount: 2000,
                fee: 12,
                status: BillRowStatus::Succeeded,
            }
        );
        assert_eq!(rows[1].kind, BillRowKind::Refund);
        assert_eq!(rows[1].amount, 350, "a refund's negative amount is what was given back");
        assert_eq!(rows[1].out_refund_no.as_deref(), Some("ref_0190cccc"));
        assert_eq!(rows[1].fee, 2);
    }

    #[test]
    fn what_the_gateway_writes_reads_back() {
        let rows = vec![BillRow {
            kind: BillRowKind::Refund,
            out_trade_no: "pay_1".into(),
            out_refund_no: Some("ref_1".into()),
            channel_txn_id: "2026001".into(),
            amount: 1999,
            fee: 12,
            status: BillRowStatus::Succeeded,
        }];
        let text = write_detail_csv("2088", "2026-12-03", &rows);
        assert_eq!(parse_bill_zip(&zipped(&[("x_业务明细.csv", gbk(&text))])).expect("parses"), rows);
    }

    #[test]
    fn a_malformed_bill_is_refused_with_a_clear_error() {
        let bad_amount = DETAIL.replace("20.00,20.00", "20.001,20.00");
        let err = parse_bill_zip(&zipped(&[("d_业务明细.csv", gbk(&bad_amount))])).expect_err("refused");
        assert!(err.to_string().contains("row 1") && err.to_string().contains("20.001"), "{err}");
        let err = parse_bill_zip(b"PK not really a zip").expect_err("refused");
        assert!(err.to_string().contains("not a zip"), "{err}");
        let err = parse_bill_zip(&zipped(&[("other.csv", gbk("a,b\n1,2\n"))])).expect_err("refused");
        assert!(err.to_string().contains("no detail file"), "{err}");
        let unknown = DETAIL.replace(",退款\t,", ",转账\t,");
        let err = parse_bill_zip(&zipped(&[("d.csv", gbk(&unknown))])).expect_err("refused");
        assert!(err.to_string().contains("转账"), "{err}");
    }
}
