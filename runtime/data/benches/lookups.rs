//! Lookups through the engine against real databases: each simulated call drives the reference
//! hotline's `Call` (the same state machine that serves calls) from its start through the bill
//! inquiry: `identify` (customer_by_phone), the service password (`lock_check`, a read of
//! password_lock, and `check_password`, a hashed check that writes the count of wrong passwords)
//! and `load_bill` (current_bill), answering every `RunQuery` command with the data layer.
//! N calls run at once, each starting a new call as soon as the last ends.
//!
//! Reports, per engine and concurrency (1, 10, 100 calls): lookups per second, and the p50 and
//! p99 latency of one lookup (from the engine's `RunQuery` to the result). SQLite is a file in a
//! temporary folder; PostgreSQL needs `IVR_TEST_POSTGRES_URL` (run through scripts/postgres.sh
//! for a throwaway server):
//!
//!     bash scripts/postgres.sh cargo bench -p ivr-data --bench lookups
//!
//! Settings: IVR_BENCH_SECONDS (per measurement, default 5), IVR_BENCH_POOL (connections,
//! default 16).

// criterion's macros write undocumented functions.
#![allow(missing_docs)]

use ivr_compiler::program::Body;
use ivr_compiler::{CheckOptions, check};
use ivr_data::connect::{self, Target};
use ivr_data::{Database, Secret, demo};
use ivr_engine::{Call, CallInfo, Channel, Command, Event, Flow, Machine, QueryResult};
use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const SECRET: &str = "bench-secret";

fn hotline() -> (Arc<Flow>, ivr_compiler::config::Config) {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ivr.toml");
    let checked = check(&CheckOptions {
        config: Some(config),
        paths: Vec::new(),
    })
    .expect("load the reference deployment");
    assert_eq!(checked.error_count(), 0, "the reference flows check clean");
    let program = checked.programs.get("hotline").expect("hotline").clone();
    (
        Arc::new(Flow::new(program, &checked.config)),
        checked.config,
    )
}

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u64>,
    errors: u64,
    calls: u64,
}

/// Feeds `event` and everything it leads to: playback finishes at once, queries run on `db`.
async fn feed(call: &mut Call, event: Event, db: &Database, tally: &mut Tally) {
    let flow = Arc::clone(call.flow());
    let mut events = VecDeque::from([event]);
    let mut out = Vec::new();
    while let Some(ev) = events.pop_front() {
        out.clear();
        call.handle_input(ev, 0);
        out.extend(std::iter::from_fn(|| call.poll_output()));
        let mut last_seq = None;
        for c in &out {
            match c {
                Command::Play { seq, .. }
                | Command::Say { seq, .. }
                | Command::Silence { seq, .. }
                | Command::Beep { seq }
                | Command::Announce { seq, .. } => last_seq = Some(*seq),
                Command::RunQuery { id, node, args, .. } => {
                    let Body::Lookup(l) = &flow.program.nodes[*node as usize].body else {
                        continue;
                    };
                    let t = Instant::now();
                    let result = db
                        .run(&l.query, args, Some(Duration::from_millis(l.timeout_ms)))
                        .await;
                    tally.latencies_us.push(t.elapsed().as_micros() as u64);
                    if let QueryResult::Error(e) = &result {
                        if tally.errors == 0 {
                            eprintln!("lookup `{}` failed: {e}", l.query);
                        }
                        tally.errors += 1;
                    }
                    events.push_back(Event::QueryDone { id: *id, result });
                }
                _ => {}
            }
        }
        if let Some(seq) = last_seq {
            events.push_back(Event::PlaybackDone { seq });
        }
    }
}

/// One call: arrives, presses 1, gives the password, hears the bill, hangs up (4 lookups).
async fn one_call(flow: &Arc<Flow>, db: &Database, n: u64, tally: &mut Tally) {
    let customer = demo::CUSTOMERS[(n as usize) % 4];
    let info = CallInfo {
        id: format!("bench-{n}"),
        caller: customer.phone.into(),
        called: "10010".into(),
        channel: Channel::Sip,
        contact: Vec::new(),
    };
    let mut call = Call::new(Arc::clone(flow), info);
    feed(&mut call, Event::Start, db, tally).await;
    feed(&mut call, Event::Key('1'), db, tally).await;
    for k in customer.password.chars() {
        feed(&mut call, Event::Key(k), db, tally).await;
    }
    feed(&mut call, Event::Hangup, db, tally).await;
    tally.calls += 1;
}

struct Figures {
    lookups_per_s: f64,
    calls_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    lookups: usize,
    errors: u64,
}

async fn measure(flow: &Arc<Flow>, db: &Database, concurrency: usize, seconds: f64) -> Figures {
    // Warm up: connections open, statements prepared.
    let mut warm = Tally::default();
    for n in 0..20 {
        one_call(flow, db, n, &mut warm).await;
    }
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..concurrency {
        let (flow, db) = (Arc::clone(flow), db.clone());
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            let mut n = c as u64;
            while Instant::now() < deadline {
                one_call(&flow, &db, n, &mut tally).await;
                n += concurrency as u64;
            }
            tally
        }));
    }
    let mut all = Tally::default();
    for t in tasks {
        let t = t.await.expect("call task");
        all.latencies_us.extend(t.latencies_us);
        all.errors += t.errors;
        all.calls += t.calls;
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.latencies_us.sort_unstable();
    let pct = |p: f64| -> f64 {
        let v = &all.latencies_us;
        if v.is_empty() {
            return 0.0;
        }
        let i = ((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1;
        v[i] as f64 / 1000.0
    };
    Figures {
        lookups_per_s: all.latencies_us.len() as f64 / elapsed,
        calls_per_s: all.calls as f64 / elapsed,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        lookups: all.latencies_us.len(),
        errors: all.errors,
    }
}

async fn bench_engine(name: &str, db: Database, flow: &Arc<Flow>, seconds: f64) {
    for concurrency in [1, 10, 100] {
        let f = measure(flow, &db, concurrency, seconds).await;
        println!(
            "| {name} | {concurrency} | {:.0} | {:.0} | {:.2} | {:.2} | {} | {} |",
            f.lookups_per_s, f.calls_per_s, f.p50_ms, f.p99_ms, f.lookups, f.errors
        );
    }
    db.pool().close().await;
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs it as a quick smoke test.
    let quick = !std::env::args().any(|a| a == "--bench");
    let seconds: f64 = std::env::var("IVR_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if quick { 0.2 } else { 5.0 });
    let pool_size: u32 = std::env::var("IVR_BENCH_POOL")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(16);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let (flow, config) = hotline();
    rt.block_on(async {
        println!(
            "lookups through the engine (4 per call), {seconds} s per row, pool of {pool_size} connections"
        );
        println!("| engine | concurrent calls | lookups/s | calls/s | p50 ms | p99 ms | lookups | errors |");
        println!("|---|---:|---:|---:|---:|---:|---:|---:|");
        let secret = Secret::new(SECRET);

        let dir = std::env::temp_dir().join(format!("ivr-bench-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let pool = connect::open(&Target::SqliteFile(dir.join("bench.db")), pool_size)
            .await
            .expect("sqlite");
        demo::ensure(&pool, Some(&secret)).await.expect("demo data");
        let db = Database::new(pool, &config.queries, Some(secret.clone())).expect("catalog");
        bench_engine("SQLite (file, WAL)", db, &flow, seconds).await;
        let _ = std::fs::remove_dir_all(&dir);

        match std::env::var("IVR_TEST_POSTGRES_URL") {
            Err(_) => println!("(PostgreSQL skipped: IVR_TEST_POSTGRES_URL is not set)"),
            Ok(admin) => {
                let name = format!("ivr_bench_{}", std::process::id());
                let (prefix, _) = admin.rsplit_once('/').expect("a database url");
                let url = format!("{prefix}/{name}");
                let a = sqlx::PgPool::connect(&admin).await.expect("postgres");
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
                    .execute(&a)
                    .await
                    .expect("drop");
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&a)
                    .await
                    .expect("create");
                let pool = connect::open(&Target::Postgres(url), pool_size)
                    .await
                    .expect("postgres");
                demo::ensure(&pool, Some(&secret)).await.expect("demo data");
                let db = Database::new(pool, &config.queries, Some(secret)).expect("catalog");
                bench_engine("PostgreSQL 127.0.0.1", db, &flow, seconds).await;
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&a)
                    .await;
                a.close().await;
            }
        }
    });
}
