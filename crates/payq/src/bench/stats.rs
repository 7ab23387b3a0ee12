//! Measurements of one scenario on one engine, and the table that compares them.

use payq_domain::Timestamp;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Records timers as they fire, for every engine under test.
pub struct Fired {
    count: AtomicU64,
    late: Mutex<Lateness>,
    first: Mutex<Option<Instant>>,
    last: Mutex<Option<Instant>>,
}

/// What [`Fired::take`] collected since the previous take.
pub struct Taken {
    /// Lateness of the timers, in milliseconds.
    pub late: Lateness,
    /// First fire to last fire.
    pub span: Option<Duration>,
    /// When the last timer fired.
    pub last: Option<Instant>,
}

impl Fired {
    /// Records timers that were due at `dues` (Unix ms) firing now.
    pub fn record(&self, dues: impl IntoIterator<Item = i64>) {
        let now = Timestamp::now().millis();
        let at = Instant::now();
        let mut n = 0;
        if let Ok(mut l) = self.late.lock() {
            for due in dues {
                // Early firings (clock granularity) count as on time; beyond a day as a day.
                let late = u64::try_from(now - due).unwrap_or(0).min(l.high());
                let _ = l.record(late);
                n += 1;
            }
        }
        if let Ok(mut f) = self.first.lock() {
            f.get_or_insert(at);
        }
        if let Ok(mut l) = self.last.lock() {
            *l = Some(at);
        }
        self.count.fetch_add(n, Ordering::SeqCst);
    }

    /// Waits until `n` timers fired since the last take, for at most `limit`, showing
    /// the count under `label` on a terminal.
    pub async fn wait_for(&self, n: u64, limit: Duration, label: &str) -> bool {
        let deadline = Instant::now() + limit;
        let bar = indicatif::ProgressBar::new(n).with_message(label.to_owned());
        if let Ok(style) = indicatif::ProgressStyle::with_template("{msg}: {bar:30} {pos}/{len} fired, {elapsed}") {
            bar.set_style(style);
        }
        let all = loop {
            let count = self.count.load(Ordering::SeqCst);
            bar.set_position(count.min(n));
            if count >= n {
                break true;
            }
            if Instant::now() > deadline {
                break false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        bar.finish_and_clear();
        all
    }

    /// Takes what was recorded and starts afresh.
    pub fn take(&self) -> Taken {
        self.count.store(0, Ordering::SeqCst);
        let late = self.late.lock().map(|mut l| std::mem::replace(&mut *l, lateness())).unwrap_or_else(|_| lateness());
        let first = self.first.lock().ok().and_then(|mut f| f.take());
        let last = self.last.lock().ok().and_then(|mut l| l.take());
        Taken { late, span: first.zip(last).map(|(f, l)| l.duration_since(f)), last }
    }
}

/// Figures of one scenario on one engine.
#[derive(Debug, Clone)]
pub struct Report {
    pub engine: &'static str,
    pub scenario: &'static str,
    pub timers: u64,
    pub scheduled_per_s: Option<f64>,
    pub fired_per_s: Option<f64>,
    /// Lateness in milliseconds.
    pub lateness_ms: Lateness,
    /// Free-form extra figures, e.g. memory per pending timer.
    pub notes: Vec<String>,
}

impl Report {
    /// The `p`-quantile of lateness (0.0 to 1.0), in milliseconds.
    pub fn late(&self, p: f64) -> Option<f64> {
        (!self.lateness_ms.is_empty()).then(|| self.lateness_ms.value_at_quantile(p) as f64)
    }

    /// The report as it stands (kept for the scenarios' builder style).
    pub fn finish(self) -> Self {
        self
    }
}

/// Lateness samples in whole milliseconds, 0 ms to a day, 3 significant digits.
pub type Lateness = hdrhistogram::Histogram<u64>;

/// An empty [`Lateness`].
pub fn lateness() -> Lateness {
    hdrhistogram::Histogram::new_with_bounds(1, 86_400_000, 3).expect("constant bounds and precision are valid")
}

impl Default for Fired {
    fn default() -> Self {
        Fired {
            count: AtomicU64::new(0),
            late: Mutex::new(lateness()),
            first: Mutex::new(None),
            last: Mutex::new(None),
        }
    }
}

impl Default for Report {
    fn default() -> Self {
        Report {
            engine: "",
            scenario: "",
            timers: 0,
            scheduled_per_s: None,
            fired_per_s: None,
            lateness_ms: lateness(),
            notes: Vec::new(),
        }
    }
}

/// Delay of timer `i` of `n`, spread over `0..max` ms in a scrambled order so that
/// neighbours in scheduling order have very different delays.
pub fn spread(i: u64, n: u64, max: u64) -> i64 {
    let scrambled = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % n.max(1);
    i64::try_from(scrambled * max / n.max(1)).unwrap_or(0)
}

/// Per-second rate of `n` events in `d`.
pub fn rate(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

fn fmt(v: Option<f64>, unit: &str) -> String {
    match v {
        Some(v) if v >= 1000.0 => format!("{:.0}{unit}", v),
        Some(v) => format!("{v:.1}{unit}"),
        None => "-".into(),
    }
}

/// Prints every report, then each peer's figures as ratios to the first engine's.
pub fn print_table(reports: &[Report]) {
    println!();
    println!(
        "| engine | scenario | timers | scheduled/s | fired/s | lateness p50 | p99 | max | notes |\n|---|---|---|---|---|---|---|---|---|"
    );
    for r in reports {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.engine,
            r.scenario,
            r.timers,
            fmt(r.scheduled_per_s, ""),
            fmt(r.fired_per_s, ""),
            fmt(r.late(0.5), " ms"),
            fmt(r.late(0.99), " ms"),
            fmt(r.late(1.0), " ms"),
            r.notes.join("; ")
        );
    }
    let Some(first) = reports.first().map(|r| r.engine) else { return };
    let base: Vec<&Report> = reports.iter().filter(|r| r.engine == first).collect();
    let peers: Vec<&Report> = reports.iter().filter(|r| r.engine != first).collect();
    if peers.is_empty() {
        return;
    }
    println!("\nratios, {first} / peer (throughput: higher is better for {first}; lateness: peer / {first})");
    println!("| peer | scenario | scheduled/s | fired/s | p99 lateness peer/store |\n|---|---|---|---|---|");
    for p in peers {
        let Some(b) = base.iter().find(|b| b.scenario == p.scenario) else { continue };
        let ratio = |a: Option<f64>, c: Option<f64>| match (a, c) {
            (Some(a), Some(c)) if c > 0.0 => format!("{:.2}x", a / c),
            _ => "-".into(),
        };
        println!(
            "| {} | {} | {} | {} | {} |",
            p.engine,
            p.scenario,
            ratio(b.scheduled_per_s, p.scheduled_per_s),
            ratio(b.fired_per_s, p.fired_per_s),
            ratio(p.late(0.99), b.late(0.99).map(|v| v.max(1.0))),
        );
    }
}
