//! The operator console in a real browser: headless Chromium (Debian's `chromium` and
//! `chromium-driver`, which `.ci/run` installs) driven over WebDriver. An operator signs
//! in, finds an order, reads its timeline, replays a dead letter and sees it delivered,
//! and rotates a webhook secret. Without chromedriver the test is skipped, unless `CI` is
//! set: then it fails. `PAYQ_CONSOLE_SCREENSHOTS=dir` saves a screenshot of each main page
//! (docs/console.md shows them).

use crate::helpers::{TestApp, TestMerchant, eventually, spawn_app_with};
use crate::receiver::Receiver;
use fantoccini::{Client, ClientBuilder, Locator};
use payq_domain::Timestamp;
use serde_json::json;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// A chromedriver process on a free port.
pub struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    /// Stops chromedriver and every browser it started (its process group), even when the
    /// test failed before closing its session.
    fn drop(&mut self) {
        // `--` before the negative id: without it, procps-ng's `kill` (4.0.2 here) reads
        // `-KILL -18262` as `kill(-1, SIGKILL)`, every process on the machine.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-s", "KILL", "--", &group]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    /// Starts chromedriver, or says why it cannot (`None` outside CI when it is missing).
    pub async fn start() -> Option<Driver> {
        if !std::path::Path::new(CHROMEDRIVER).exists() || !std::path::Path::new(CHROMIUM).exists() {
            assert!(std::env::var_os("CI").is_none(), "CI: {CHROMEDRIVER} and {CHROMIUM} must be installed");
            eprintln!("skipping: chromium or chromedriver is not installed");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port());
        let port = port.expect("a free port");
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let url = format!("http://127.0.0.1:{port}");
        eventually("chromedriver answers", || async {
            payq_channels::http_client()
                .build()
                .expect("an HTTP client")
                .get(format!("{url}/status"))
                .send()
                .await
                .ok()
                .filter(|r| r.status().is_success())
                .map(|_| ())
        })
        .await;
        Some(Driver { child, url })
    }

    /// A headless Chromium session.
    async fn browser(&self) -> Client {
        self.browser_with(&["--window-size=1280,1000"]).await
    }

    /// A headless Chromium session with `extra` arguments (window size, user agent, language).
    pub async fn browser_with(&self, extra: &[&str]) -> Client {
        let mut args = vec![
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-dev-shm-usage",
        ];
        args.extend_from_slice(extra);
        // Headless Chromium's requests name the language in its preferences, not `--lang`.
        let lang = extra.iter().find_map(|a| a.strip_prefix("--lang=")).unwrap_or("en-US");
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({ "binary": CHROMIUM, "args": args, "prefs": { "intl.accept_languages": lang } }),
        );
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&self.url)
            .await
            .expect("a browser session")
    }
}

/// The element `css` selects, waiting up to 10 s for the page to show it.
pub async fn el(browser: &Client, css: &str) -> fantoccini::elements::Element {
    browser
        .wait()
        .at_most(std::time::Duration::from_secs(10))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css} on the page: {e}"))
}

/// The text of the element `css` selects, once the page shows it.
pub async fn text_of(browser: &Client, css: &str) -> String {
    el(browser, css).await.text().await.unwrap_or_default()
}

/// Waits (up to 10 s) until the element `css` selects reads `want`, finding it afresh each
/// time: after a click that navigates, the old page's element may be read first.
pub async fn wait_for_text(browser: &Client, css: &str, want: &str) {
    wait_for_text_that(browser, css, &format!("reads {want:?}"), |text| text == want).await;
}

/// [`wait_for_text`] for an element whose text contains `part`.
pub async fn wait_for_text_containing(browser: &Client, css: &str, part: &str) {
    wait_for_text_that(browser, css, &format!("contains {part:?}"), |text| text.contains(part)).await;
}

async fn wait_for_text_that(browser: &Client, css: &str, what: &str, fits: impl Fn(&str) -> bool) {
    crate::helpers::eventually(&format!("{css} {what}"), || async {
        let found = browser.find(Locator::Css(css)).await.ok()?;
        fits(&found.text().await.ok()?).then_some(())
    })
    .await;
}

pub async fn screenshot(browser: &Client, name: &str) {
    if let Some(dir) = std::env::var_os("PAYQ_CONSOLE_SCREENSHOTS") {
        let png = browser.screenshot().await.expect("screenshot");
        std::fs::write(std::path::Path::new(&dir).join(format!("{name}.png")), png).expect("screenshot written");
    }
}

/// A merchant with a webhook at `url`, and its webhook secret.
async fn hooked_merchant(app: &TestApp, url: &str) -> (TestMerchant, String) {
    let r = app.post("/v1/merchants", &app.admin_token, json!({ "name": "Tea House", "webhook_url": url })).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let text = |field: &str| r.body[field].as_str().unwrap_or_default().to_owned();
    (TestMerchant { id: text("id"), key: text("api_key") }, text("webhook_secret"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_signs_in_finds_an_order_replays_a_dead_letter_and_rotates_a_secret() {
    let Some(driver) = Driver::start().await else { return };
    let hook = Receiver::start().await;
    hook.always_fail(true);
    let app = spawn_app_with(|s| s.webhook.retry_schedule = "100ms".into()).await;
    let (m, _) = hooked_merchant(&app, &hook.url).await;
    let order = app.paid_order(&m, "TEA-1001", 1999).await;
    let order_id = order["id"].as_str().unwrap_or_default().to_owned();
    // The endpoint refuses everything: the order's first delivery is dead-lettered.
    eventually("a delivery is dead-lettered", || async {
        let r = app.get("/v1/admin/dead-letters", &app.admin_token).await;
        (r.body["data"].as_array().is_some_and(|d| !d.is_empty())).then_some(())
    })
    .await;

    let browser = driver.browser().await;
    let console = format!("{}/console", app.base);

    // Signing in: a wrong token is refused, the admin token opens the overview.
    browser.goto(&console).await.expect("console");
    el(&browser, "#token").await.send_keys("not-the-token").await.expect("typed");
    el(&browser, "button[type=submit]").await.click().await.expect("clicked");
    assert_eq!(text_of(&browser, "div.error").await, "That is not the admin token.");
    el(&browser, "#token").await.send_keys(&app.admin_token).await.expect("typed");
    el(&browser, "button[type=submit]").await.click().await.expect("clicked");
    let orders_total = text_of(&browser, "#orders-total .n").await;
    assert_eq!(orders_total, "1");
    let dead_total = text_of(&browser, "#dead-letters-total .n").await;
    assert_ne!(dead_total, "0");
    assert!(text_of(&browser, "#orders-by-status").await.contains("paid"));
    screenshot(&browser, "overview").await;

    // Finding the order by its merchant order number, then its timeline.
    app.order(&m, "TEA-0999", 500).await; // another order, which the search leaves out
    browser.goto(&format!("{console}/orders")).await.expect("orders");
    el(&browser, "#orders").await;
    assert_eq!(browser.find_all(Locator::Css("#orders td:first-child a")).await.expect("rows").len(), 2);
    el(&browser, "#q").await.send_keys("TEA-1001").await.expect("typed");
    el(&browser, "form.search button").await.click().await.expect("clicked");
    let rows = eventually("the search narrows the list", || async {
        let rows = browser.find_all(Locator::Css("#orders td:first-child a")).await.ok()?;
        (rows.len() == 1).then_some(rows)
    })
    .await;
    screenshot(&browser, "orders").await;
    rows[0].click().await.expect("opened");
    let timeline = text_of(&browser, "#timeline").await;
    for event in ["order.created", "order.paying", "payment.succeeded"] {
        assert!(timeline.contains(event), "{event} missing from the timeline:\n{timeline}");
    }
    assert!(text_of(&browser, "h1").await.contains(&order_id));
    screenshot(&browser, "timeline").await;

    // Replaying a dead letter once the endpoint works: it is delivered.
    hook.always_fail(false);
    browser.goto(&format!("{console}/dead-letters")).await.expect("dead letters");
    screenshot(&browser, "dead-letters").await;
    el(&browser, "#dead-letters input[type=checkbox]").await.click().await.expect("ticked");
    el(&browser, "#replay-selected").await.click().await.expect("clicked");
    assert!(text_of(&browser, "div.flash").await.contains("Replayed 1 dead letter(s)"));
    eventually("the replayed delivery arrives", || async { (!hook.delivered().is_empty()).then_some(()) }).await;
    // Purging asks for confirmation first.
    let remaining =
        app.get("/v1/admin/dead-letters", &app.admin_token).await.body["data"].as_array().map_or(0, Vec::len);
    if remaining > 0 {
        browser.goto(&format!("{console}/dead-letters")).await.expect("dead letters");
        el(&browser, "#purge").await.click().await.expect("clicked");
        assert!(text_of(&browser, "div.error").await.contains("Nothing purged"));
    }

    // Rotating the webhook secret: shown once, and the next webhook is signed with it.
    browser.goto(&format!("{console}/merchants/{}", m.id)).await.expect("merchant");
    el(&browser, "#rotate").await;
    screenshot(&browser, "merchant").await;
    el(&browser, "input[name=webhook_secret]").await.click().await.expect("ticked");
    el(&browser, "#rotate-submit").await.click().await.expect("clicked");
    let secret = text_of(&browser, "#new-webhook-secret").await;
    assert!(secret.starts_with("whsec_"), "{secret}");
    let before = hook.log().len();
    app.order(&m, "TEA-1002", 500).await;
    let received = eventually("the next event arrives", || async { hook.log().into_iter().nth(before) }).await;
    let now = Timestamp::now().unix_seconds();
    payq_app::crypto::verify_signature(&secret, &received.signature, received.body.as_bytes(), now, 300)
        .expect("signed with the rotated secret");

    browser.close().await.expect("closed");
    assert_eq!(app.verify().0, 0);
}

#[tokio::test]
async fn console_pages_need_a_session_and_forms_need_its_token() {
    let app = spawn_app_with(|_| {}).await;
    let http = payq_channels::http_client().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    for path in
        ["/console", "/console/orders", "/console/dead-letters", "/console/merchants", "/console/reconciliation"]
    {
        let r = http.get(app.url(path)).send().await.expect("sent");
        assert_eq!(r.status(), 303, "{path}");
        assert_eq!(r.headers()["location"], "/console/login", "{path}");
    }
    // A forged session cookie is no session.
    let r = http.get(app.url("/console")).header("cookie", "payq_console=9999999999.00").send().await.expect("sent");
    assert_eq!(r.status(), 303);
    // Signed in, a form without the session's token changes nothing.
    let r = http.post(app.url("/console/login")).body(format!("token={}", app.admin_token)).send().await.expect("sent");
    let cookie =
        r.headers()["set-cookie"].to_str().unwrap_or_default().split(';').next().unwrap_or_default().to_owned();
    let r = http
        .post(app.url("/console/merchants"))
        .header("cookie", &cookie)
        .body("name=Forged&csrf=wrong")
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), 403);
    let page = http.get(app.url("/console/merchants")).header("cookie", &cookie).send().await.expect("sent");
    assert!(page.headers()["content-security-policy"].to_str().unwrap_or_default().contains("default-src 'none'"));
    assert!(!page.text().await.unwrap_or_default().contains("Forged"), "nothing was created");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_reads_a_reconciliation_and_resolves_a_discrepancy() {
    let Some(driver) = Driver::start().await else { return };
    let gateway = payq_gateways::alipay::AlipaySandbox::start().await.expect("alipay sandbox");
    let secrets = "c0501ec0501ec0501ec0501ec0501ec0501ec0501ec0501ec0501ec0501ec050";
    let (app, m) = crate::real_channels::setup(secrets, &gateway, |_| {}).await;
    // Two paid orders; the channel's bill leaves the second out.
    let mut payments = Vec::new();
    for (no, amount) in [("REC-1", 1200), ("REC-2", 3400)] {
        let order = app.pay_through(&m, "alipay", no, amount, None).await;
        let (order_id, payment_id) = crate::helpers::order_and_payment_ids(&order);
        gateway.buyer_pays(&payment_id).await.expect("notified");
        app.wait_order(&m, &order_id, "paid").await;
        payments.push(payment_id);
    }
    gateway.bill_book().drop_trade(&payments[1]);
    let today = payq_gateways::bills::china_date(Timestamp::now().millis());
    let r = app
        .post(
            "/v1/admin/reconciliations",
            &app.admin_token,
            json!({ "merchant_id": m.id, "channel": "alipay", "bill_date": today }),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let run_id = r.body["id"].as_str().unwrap_or_default().to_owned();
    eventually("the run completes", || async {
        let run = app.get(&format!("/v1/admin/reconciliations/{run_id}"), &app.admin_token).await.body;
        (run["status"] == "completed").then_some(())
    })
    .await;

    let browser = driver.browser().await;
    let console = format!("{}/console", app.base);
    browser.goto(&console).await.expect("console");
    el(&browser, "#token").await.send_keys(&app.admin_token).await.expect("typed");
    el(&browser, "button[type=submit]").await.click().await.expect("clicked");
    el(&browser, "#orders-total").await;

    // The runs by day and channel, then the run with its discrepancy.
    browser.goto(&format!("{console}/reconciliation")).await.expect("runs");
    assert_eq!(text_of(&browser, "#runs td.matched").await, "1");
    assert_eq!(text_of(&browser, "#runs td.discrepancies").await, "1");
    screenshot(&browser, "reconciliation").await;
    el(&browser, "#runs td a").await.click().await.expect("opened");
    assert_eq!(text_of(&browser, "#discrepancies td.kind").await, "missing_at_channel");
    assert!(text_of(&browser, "#discrepancies").await.contains(&payments[1]));

    // Resolving it needs a note; the note, who and when are kept.
    el(&browser, "#discrepancies input[name=note]").await.send_keys("bill reissued by Alipay").await.expect("typed");
    el(&browser, "#discrepancies button[type=submit]").await.click().await.expect("clicked");
    wait_for_text_containing(&browser, "#discrepancies td.resolution", "bill reissued by Alipay").await;
    let found = app.get(&format!("/v1/admin/reconciliations/{run_id}/discrepancies"), &app.admin_token).await;
    let d = &found.body["data"][0];
    assert_eq!((d["note"].as_str(), d["resolved_by"].as_str()), (Some("bill reissued by Alipay"), Some("console")));

    // Running the day again keeps the resolution of a discrepancy found again.
    el(&browser, "#rerun").await.click().await.expect("clicked");
    wait_for_text(&browser, "div.flash", "Started again.").await;
    eventually("the run completes again", || async {
        let run = app.get(&format!("/v1/admin/reconciliations/{run_id}"), &app.admin_token).await.body;
        (run["status"] == "completed" && gateway.bill_book().requests() == 2).then_some(())
    })
    .await;
    let found = app.get(&format!("/v1/admin/reconciliations/{run_id}/discrepancies"), &app.admin_token).await;
    assert_eq!(found.body["data"][0]["note"], "bill reissued by Alipay", "{}", found.body);
    browser.close().await.expect("closed");
}
