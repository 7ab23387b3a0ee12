//! The Redis sorted-set peer: the delay queue teams build on Redis. Producers `ZADD` timers
//! scored by their due time; pollers repeatedly take the due ones with a Lua script
//! (`ZRANGEBYSCORE … LIMIT` then `ZREM`, atomic on the server) and sleep 10 ms when nothing
//! is due. Durability is whatever the server is configured with (the Redis this benchmark
//! is usually run against keeps nothing on disk), so the peer does no fsync at all.

use super::TimersArgs;
use super::batched::{self, InsertBatch};
use super::stats::{Fired, Report};
use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

const ENGINE: &str = "Redis sorted-set poller";
const POLLERS: usize = 2;
const BATCH: usize = 1_000;

/// Takes up to ARGV[2] members scored at most ARGV[1], with their scores, and removes them.
const TAKE_DUE: &str = r"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, ARGV[2])
if #due == 0 then return due end
local members = {}
for i = 1, #due, 2 do members[#members + 1] = due[i] end
redis.call('ZREM', KEYS[1], unpack(members))
return due
";

async fn poll(mut conn: MultiplexedConnection, key: String, fired: Arc<Fired>, stop: Arc<AtomicBool>) {
    let script = redis::Script::new(TAKE_DUE);
    while !stop.load(Ordering::SeqCst) {
        let now = payq_domain::Timestamp::now().millis();
        let taken: Result<Vec<(String, i64)>, _> = script.key(&key).arg(now).arg(BATCH).invoke_async(&mut conn).await;
        match taken {
            Ok(due) if !due.is_empty() => fired.record(due.into_iter().map(|(_, score)| score)),
            Ok(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            Err(e) => {
                println!("{ENGINE}: poller stopped: {e}");
                return;
            }
        }
    }
}

/// Adds batches of timers to the sorted set, each with a member of its own.
#[derive(Clone)]
struct Inserter {
    conn: MultiplexedConnection,
    key: Arc<str>,
    next: Arc<AtomicU64>,
}

impl InsertBatch for Inserter {
    async fn insert(&self, dues: Vec<i64>) -> anyhow::Result<()> {
        let first = self.next.fetch_add(dues.len() as u64, Ordering::SeqCst);
        let items: Vec<(i64, u64)> = dues.into_iter().zip(first..).collect();
        let mut conn = self.conn.clone();
        let _: () = conn.zadd_multiple(&*self.key, &items).await?;
        Ok(())
    }
}

/// Runs the mixed, drain and steady scenarios; skipped if Redis does not answer.
pub async fn run(args: &TimersArgs) -> anyhow::Result<Vec<Report>> {
    let connected = async { redis::Client::open(args.redis_url.as_str())?.get_multiplexed_async_connection().await };
    let conn = match tokio::time::timeout(Duration::from_secs(5), connected).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            println!("{ENGINE}: skipped, Redis at {} unreachable: {e}", args.redis_url);
            return Ok(Vec::new());
        }
        Err(_) => {
            println!("{ENGINE}: skipped, Redis at {} does not answer", args.redis_url);
            return Ok(Vec::new());
        }
    };
    let key = format!("payq_bench_timers_{}", std::process::id());
    let fired = Arc::new(Fired::default());
    let stop = Arc::new(AtomicBool::new(false));
    let pollers: Vec<_> =
        (0..POLLERS).map(|_| tokio::spawn(poll(conn.clone(), key.clone(), fired.clone(), stop.clone()))).collect();
    let inserter = Inserter { conn: conn.clone(), key: key.as_str().into(), next: Arc::new(AtomicU64::new(0)) };
    let result = batched::scenarios(args, ENGINE, &inserter, &fired).await;
    stop.store(true, Ordering::SeqCst);
    for p in pollers {
        let _ = p.await;
    }
    let mut conn = conn;
    let _: Result<(), _> = conn.del(&key).await;
    result
}
