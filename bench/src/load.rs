//! The load generator, with asbench's flags where they exist.
//!
//! Workers keep `-z` requests in flight against the cluster found from any seed. Without a
//! target rate they run closed-loop (a new request as soon as one completes); with `-g` they
//! run open-loop: request *i* of a worker is due at `start + i / rate`, and its latency is
//! counted from that intended time, so a stalled server shows up in the percentiles instead
//! of silently lowering the offered load. Latencies go into HDR histograms (µs), a status
//! line is printed every second, and a summary (with `--output-json`, also as JSON) at the
//! end or on Ctrl-C.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
// Each worker's statistics are shared only with the once-a-second reporter: a std mutex.
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use hdrhistogram::Histogram;
use petrel_client::policy::BasePolicy;
use petrel_client::{Bin, Bins, Client, ClientPolicy, Error, Key, ReadPolicy, RecordExistsAction, Value, WritePolicy};
use rand::{Rng, SeedableRng};
use serde::Serialize;

#[derive(Debug, Parser)]
#[command(
    name = "petrel-bench",
    version,
    disable_help_flag = true,
    about = "Load generator for Petrel (and Aerospike) clusters"
)]
pub struct Args {
    /// Seed hosts, comma-separated (host or host:port); any one finds the cluster.
    #[arg(short = 'h', long = "hosts", default_value = "127.0.0.1")]
    pub hosts: String,
    /// Port for hosts given without one.
    #[arg(short = 'p', long = "port", default_value_t = 3000)]
    pub port: u16,
    #[arg(short = 'n', long = "namespace", default_value = "test")]
    pub namespace: String,
    #[arg(short = 's', long = "set", default_value = "testset")]
    pub set: String,
    /// Number of keys.
    #[arg(short = 'k', long = "keys", default_value_t = 100_000)]
    pub keys: u64,
    /// First key.
    #[arg(short = 'K', long = "start-key", default_value_t = 0)]
    pub start_key: u64,
    /// Workload: `I` (linear insert), `RU,<read%>`, `RR,<read%>` (replace), `RUD,<read%>,<write%>`,
    /// `Q,<width>` (secondary-index queries of `width` values of `testbin`), `S` (scans of the
    /// whole set).
    #[arg(short = 'w', long = "workload", default_value = "RU,50")]
    pub workload: String,
    /// Record spec: comma-separated bins, each `I` (integer), `D` (double), `S<n>` (string of
    /// n bytes), `B<n>` (blob of n bytes), `L<n>` (list of n integers), `M<n>` (map of n entries).
    #[arg(short = 'o', long = "object", default_value = "I")]
    pub object: String,
    /// Seconds to run (random workloads); linear insert runs until every key is written.
    #[arg(short = 't', long = "duration", default_value_t = 10)]
    pub duration_secs: u64,
    /// Requests in flight.
    #[arg(short = 'z', long = "concurrency", default_value_t = 16)]
    pub concurrency: usize,
    /// Target rate in operations per second (open loop); 0 = as fast as possible.
    #[arg(short = 'g', long = "throughput", default_value_t = 0)]
    pub rate: u64,
    /// Timeout of each request in milliseconds.
    #[arg(short = 'T', long = "timeout", default_value_t = 1000)]
    pub timeout_ms: u64,
    /// Keys per batch read (1 = single reads).
    #[arg(long = "batch-size", default_value_t = 1)]
    pub batch_size: usize,
    /// Percentiles to report.
    #[arg(long = "percentiles", default_value = "50,90,99,99.9,99.99")]
    pub percentiles: String,
    /// Write each operation's histogram (HDR V2 format) into this directory.
    #[arg(long = "hdr-hist")]
    pub hdr_hist: Option<PathBuf>,
    /// Drive the Redis server at this address (GET/SET/DEL of the same keys and values, for
    /// side-by-side runs) instead of Petrel. Record specs become one value of the spec's size.
    #[arg(long = "redis")]
    pub redis: Option<String>,
    /// Write the summary as JSON to this file.
    #[arg(long = "output-json")]
    pub output_json: Option<PathBuf>,
    /// A filter expression on every request, `BIN<op>INT` (op: >=, <=, ==, !=, >, <).
    #[arg(long = "filter")]
    pub filter: Option<String>,
    /// Print help.
    #[arg(long = "help", action = clap::ArgAction::Help)]
    help: Option<bool>,
}

/// What a run does.
#[derive(Debug, Clone, PartialEq)]
pub enum Workload {
    Insert,
    ReadUpdate { read_pct: u8 },
    ReadReplace { read_pct: u8 },
    ReadUpdateDelete { read_pct: u8, write_pct: u8 },
    Query { width: u64 },
    Scan,
}

impl Workload {
    pub fn parse(s: &str) -> Result<Workload, String> {
        let parts: Vec<&str> = s.split(',').collect();
        let pct = |v: Option<&&str>| -> Result<u8, String> {
            let n: u8 = v.ok_or("a percentage is missing")?.parse().map_err(|_| format!("bad percentage in {s:?}"))?;
            if n > 100 {
                return Err(format!("percentage over 100 in {s:?}"));
            }
            Ok(n)
        };
        match parts[0] {
            "I" if parts.len() == 1 => Ok(Workload::Insert),
            "RU" if parts.len() == 2 => Ok(Workload::ReadUpdate { read_pct: pct(parts.get(1))? }),
            "RR" if parts.len() == 2 => Ok(Workload::ReadReplace { read_pct: pct(parts.get(1))? }),
            "RUD" if parts.len() == 3 => {
                let (r, w) = (pct(parts.get(1))?, pct(parts.get(2))?);
                if r as u16 + w as u16 > 100 {
                    return Err(format!("read% + write% over 100 in {s:?}"));
                }
                Ok(Workload::ReadUpdateDelete { read_pct: r, write_pct: w })
            }
            "S" if parts.len() == 1 => Ok(Workload::Scan),
            "Q" if parts.len() == 2 => match parts[1].parse::<u64>() {
                Ok(width) if width > 0 => Ok(Workload::Query { width }),
                _ => Err(format!("bad query width in {s:?}")),
            },
            _ => Err(format!("unknown workload {s:?} (I, RU,<read%>, RR,<read%>, RUD,<read%>,<write%>, Q,<width>, S)")),
        }
    }
}

impl Workload {
    /// Percent of reads and of writes (the rest are deletes).
    fn mix(&self) -> (u8, u8) {
        match self {
            Workload::ReadUpdate { read_pct } | Workload::ReadReplace { read_pct } => (*read_pct, 100 - read_pct),
            Workload::ReadUpdateDelete { read_pct, write_pct } => (*read_pct, *write_pct),
            Workload::Insert => (0, 100),
            Workload::Query { .. } | Workload::Scan => (0, 0),
        }
    }
}

/// Open loop: waits until request `i` is due (`start + i * period`) and returns that time, from
/// which its latency counts; closed loop (no period): now.
async fn pace(period: Option<Duration>, start: Instant, i: u64) -> Instant {
    match period {
        Some(p) => {
            let due = start + p.mul_f64(i as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                tokio::time::sleep(wait).await;
            }
            due
        }
        None => Instant::now(),
    }
}

/// One bin of the record spec.
#[derive(Debug, Clone, PartialEq)]
pub enum BinSpec {
    Int,
    Double,
    Str(usize),
    Blob(usize),
    List(usize),
    Map(usize),
}

pub fn parse_object(s: &str) -> Result<Vec<BinSpec>, String> {
    let size = |t: &str| -> Result<usize, String> {
        let n: usize = t[1..].parse().map_err(|_| format!("bad size in {t:?}"))?;
        if n > 1 << 20 {
            return Err(format!("{t:?}: at most 1 MiB"));
        }
        Ok(n)
    };
    s.split(',')
        .map(|t| match t.chars().next() {
            Some('I') if t.len() == 1 => Ok(BinSpec::Int),
            Some('D') if t.len() == 1 => Ok(BinSpec::Double),
            Some('S') => Ok(BinSpec::Str(size(t)?)),
            Some('B') => Ok(BinSpec::Blob(size(t)?)),
            Some('L') => Ok(BinSpec::List(size(t)?)),
            Some('M') => Ok(BinSpec::Map(size(t)?)),
            _ => Err(format!("unknown bin spec {t:?} (I, D, S<n>, B<n>, L<n>, M<n>)")),
        })
        .collect()
}

/// The bins of record `key_number`: integers hold the key number (so index queries select
/// known records), the other types random values.
fn make_bins(spec: &[BinSpec], key_number: u64, rng: &mut impl Rng) -> Vec<Bin> {
    spec.iter()
        .enumerate()
        .map(|(i, s)| {
            let name = if i == 0 { "testbin".to_string() } else { format!("testbin_{}", i + 1) };
            let value = match s {
                BinSpec::Int => Value::Int(key_number as i64),
                BinSpec::Double => Value::Float(rng.gen()),
                BinSpec::Str(n) => Value::String((0..*n).map(|_| rng.gen_range(b'a'..=b'z') as char).collect()),
                BinSpec::Blob(n) => Value::Blob((0..*n).map(|_| rng.gen()).collect()),
                BinSpec::List(n) => Value::List((0..*n).map(|_| Value::Int(rng.gen_range(0..1000))).collect()),
                BinSpec::Map(n) => {
                    Value::Map((0..*n).map(|k| (Value::Int(k as i64), Value::Int(rng.gen_range(0..1000)))).collect())
                }
            };
            Bin { name, value }
        })
        .collect()
}

/// Counters and histograms of one operation kind.
#[derive(Debug)]
struct OpStats {
    total: Histogram<u64>,
    interval: Histogram<u64>,
    hits: u64,
    misses: u64,
    timeouts: u64,
    errors: u64,
    interval_count: u64,
}

impl OpStats {
    fn new() -> OpStats {
        // 1 µs to 1 hour at 3 significant digits.
        let h = Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("histogram bounds");
        OpStats { total: h.clone(), interval: h, hits: 0, misses: 0, timeouts: 0, errors: 0, interval_count: 0 }
    }

    fn record(&mut self, latency: Duration, outcome: Outcome) {
        let us = (latency.as_micros() as u64).clamp(1, 3_600_000_000);
        let _ = self.total.record(us);
        let _ = self.interval.record(us);
        self.interval_count += 1;
        match outcome {
            Outcome::Hit => self.hits += 1,
            Outcome::Miss => self.misses += 1,
            Outcome::Timeout => self.timeouts += 1,
            Outcome::Error => self.errors += 1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Outcome {
    Hit,
    Miss,
    Timeout,
    Error,
}

const OPS: [&str; 5] = ["read", "write", "delete", "query", "scan"];

#[derive(Debug)]
struct WorkerStats {
    ops: [OpStats; 5],
}

impl WorkerStats {
    fn new() -> Self {
        WorkerStats { ops: std::array::from_fn(|_| OpStats::new()) }
    }
}

/// The summary of one operation kind, as printed and as JSON.
#[derive(Debug, Serialize)]
pub struct OpSummary {
    pub count: u64,
    pub ops_per_sec: f64,
    pub hits: u64,
    pub misses: u64,
    pub timeouts: u64,
    pub errors: u64,
    /// Percentile (as written in `--percentiles`) to latency in microseconds.
    pub latency_us: BTreeMap<String, u64>,
    pub latency_us_max: u64,
}

/// The whole run's summary.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub workload: String,
    pub object: String,
    pub keys: u64,
    pub concurrency: usize,
    pub target_rate: u64,
    pub seconds: f64,
    pub interrupted: bool,
    pub ops: BTreeMap<String, OpSummary>,
}

fn classify(r: &Result<bool, Error>) -> Outcome {
    match r {
        Ok(true) => Outcome::Hit,
        Ok(false) => Outcome::Miss,
        Err(Error::Timeout) => Outcome::Timeout,
        Err(e) if e.result_code() == Some(9) => Outcome::Timeout,
        Err(_) => Outcome::Error,
    }
}

struct Shared {
    args: Args,
    workload: Workload,
    spec: Vec<BinSpec>,
    /// The Petrel client; `None` when driving Redis.
    client: Option<Client>,
    /// `--filter`, packed once.
    filter: Option<petrel_client::FilterExp>,
    stop: AtomicBool,
    next_insert: AtomicU64,
}

/// Kinds of request, as indexes into a worker's per-kind statistics.
const READ: usize = 0;
const WRITE: usize = 1;
const DELETE: usize = 2;
const QUERY: usize = 3;
const SCAN: usize = 4;

impl Shared {
    /// The next request of the workload: its key number and kind; `None` once a linear
    /// insert has covered every key.
    fn next_op(&self, rng: &mut impl Rng) -> Option<(u64, usize)> {
        let a = &self.args;
        match &self.workload {
            Workload::Insert => {
                let n = self.next_insert.fetch_add(1, Ordering::Relaxed);
                (n < a.keys).then_some((a.start_key + n, WRITE))
            }
            Workload::Query { .. } => Some((a.start_key + rng.gen_range(0..a.keys.max(1)), QUERY)),
            Workload::Scan => Some((a.start_key, SCAN)),
            w => {
                let (read_pct, write_pct) = w.mix();
                let dice = rng.gen_range(0..100u8);
                let op = if dice < read_pct {
                    READ
                } else if dice < read_pct.saturating_add(write_pct) {
                    WRITE
                } else {
                    DELETE
                };
                Some((a.start_key + rng.gen_range(0..a.keys.max(1)), op))
            }
        }
    }
}

/// The bytes a Redis SET stores for a record spec: the values' sizes, summed.
fn redis_value(spec: &[BinSpec], rng: &mut impl Rng) -> Vec<u8> {
    let len: usize = spec
        .iter()
        .map(|s| match s {
            BinSpec::Int | BinSpec::Double => 8,
            BinSpec::Str(n) | BinSpec::Blob(n) => *n,
            BinSpec::List(n) | BinSpec::Map(n) => 2 * n + 1,
        })
        .sum();
    (0..len).map(|_| rng.gen_range(b'a'..=b'z')).collect()
}

async fn redis_worker(
    shared: Arc<Shared>,
    stats: Arc<Mutex<WorkerStats>>,
    id: usize,
    deadline: Option<Instant>,
    start: Instant,
    addr: String,
) {
    let a = &shared.args;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed ^ id as u64);
    let mut conn = match crate::redis::RedisConn::connect(&addr).await {
        Ok(c) => Some(c),
        Err(e) => {
            eprintln!("petrel-bench: redis {addr}: {e}");
            None
        }
    };
    let period = (a.rate > 0).then(|| Duration::from_secs_f64(a.concurrency as f64 / a.rate as f64));
    let timeout = Duration::from_millis(a.timeout_ms);
    let mut i: u64 = 0;
    let mut key = Vec::with_capacity(32);
    loop {
        if shared.stop.load(Ordering::Relaxed) || deadline.is_some_and(|d| Instant::now() >= d) {
            return;
        }
        let intended = pace(period, start, i).await;
        i += 1;
        let Some((k, op)) = shared.next_op(&mut rng) else { return };
        key.clear();
        key.extend_from_slice(a.set.as_bytes());
        key.push(b':');
        key.extend_from_slice(k.to_string().as_bytes());
        let result = match conn.as_mut() {
            None => Err(std::io::Error::from(std::io::ErrorKind::NotConnected)),
            Some(c) => {
                let call = async {
                    match op {
                        READ => c.get(&key).await,
                        WRITE => {
                            let v = redis_value(&shared.spec, &mut rng);
                            c.set(&key, &v).await
                        }
                        _ => c.del(&key).await,
                    }
                };
                match tokio::time::timeout(timeout, call).await {
                    Ok(r) => r,
                    Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
                }
            }
        };
        let outcome = match &result {
            Ok(true) => Outcome::Hit,
            Ok(false) => Outcome::Miss,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => Outcome::Timeout,
            Err(_) => Outcome::Error,
        };
        if result.is_err() {
            // The connection may hold a late reply; start over on a new one.
            conn = crate::redis::RedisConn::connect(&addr).await.ok();
        }
        if let Ok(mut s) = stats.lock() {
            s.ops[op].record(intended.elapsed(), outcome);
        }
    }
}

async fn worker(
    shared: Arc<Shared>,
    stats: Arc<Mutex<WorkerStats>>,
    id: usize,
    deadline: Option<Instant>,
    start: Instant,
) {
    let a = &shared.args;
    let Some(client) = shared.client.as_ref() else { return };
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed ^ id as u64);
    let base = BasePolicy {
        total_timeout: Duration::from_millis(a.timeout_ms),
        max_retries: 1,
        filter_expression: shared.filter.clone(),
        ..Default::default()
    };
    let rp = ReadPolicy { base: base.clone() };
    let wp = WritePolicy { base: base.clone(), ..Default::default() };
    let replace = WritePolicy { base: base.clone(), exists: RecordExistsAction::Replace, ..Default::default() };
    let qbase = base.clone();
    let bp = petrel_client::BatchPolicy { base };
    let period = (a.rate > 0).then(|| Duration::from_secs_f64(a.concurrency as f64 / a.rate as f64));
    let mut i: u64 = 0;
    let key = |k: u64| Key::new(a.namespace.as_str(), a.set.as_str(), Value::Int(k as i64));
    loop {
        if shared.stop.load(Ordering::Relaxed) || deadline.is_some_and(|d| Instant::now() >= d) {
            return;
        }
        let intended = pace(period, start, i).await;
        i += 1;
        let Some((n, op)) = shared.next_op(&mut rng) else { return };
        let Ok(k) = key(n) else { return };
        let outcome = match op {
            READ if a.batch_size > 1 => {
                let mut keys = vec![k];
                for _ in 1..a.batch_size {
                    if let Ok(k) = key(a.start_key + rng.gen_range(0..a.keys.max(1))) {
                        keys.push(k);
                    }
                }
                let r = client.batch_get(&bp, &keys, Bins::All).await;
                classify(&r.map(|rows| rows.iter().all(Option::is_some)))
            }
            READ => classify(&match client.get(&rp, &k, Bins::All).await {
                Ok(_) => Ok(true),
                Err(e) if e.is_not_found() => Ok(false),
                Err(e) => Err(e),
            }),
            WRITE => {
                let bins = make_bins(&shared.spec, n, &mut rng);
                let policy = if matches!(shared.workload, Workload::ReadReplace { .. }) { &replace } else { &wp };
                classify(&client.put(policy, &k, &bins).await.map(|_| true))
            }
            SCAN => {
                let sp = petrel_client::ScanPolicy { base: qbase.clone(), ..Default::default() };
                classify(&crate::filter_scan::scan(client, &sp, &a.namespace, &a.set).await)
            }
            QUERY => {
                let Workload::Query { width } = shared.workload else { return };
                let sp = petrel_client::ScanPolicy { base: qbase.clone(), ..Default::default() };
                classify(&crate::query_load::query(client, &sp, &a.namespace, &a.set, n, width).await)
            }
            _ => classify(&client.delete(&wp, &k).await),
        };
        let latency = intended.elapsed();
        if let Ok(mut s) = stats.lock() {
            s.ops[op].record(latency, outcome);
        }
    }
}

fn percentiles(spec: &str) -> Result<Vec<(String, f64)>, String> {
    spec.split(',')
        .map(|p| {
            let v: f64 = p.trim().parse().map_err(|_| format!("bad percentile {p:?}"))?;
            if !(0.0..=100.0).contains(&v) {
                return Err(format!("percentile {p} is not within 0..100"));
            }
            Ok((p.trim().to_string(), v))
        })
        .collect()
}

/// Runs the load as configured by `args`; returns the summary.
pub async fn run(args: Args) -> Result<Summary, String> {
    let workload = Workload::parse(&args.workload)?;
    let spec = parse_object(&args.object)?;
    let filter = args.filter.as_deref().map(crate::filter_scan::parse_filter).transpose()?;
    if filter.is_some() && args.redis.is_some() {
        return Err("--filter applies to Petrel only, not --redis".into());
    }
    let pcts = percentiles(&args.percentiles)?;
    if args.concurrency == 0 || args.concurrency > 10_000 {
        return Err("-z must be 1 to 10000".into());
    }
    if args.batch_size == 0 || args.batch_size > 5000 {
        return Err("--batch-size must be 1 to 5000".into());
    }
    let seeds: Vec<String> = args
        .hosts
        .split(',')
        .filter(|h| !h.is_empty())
        .map(|h| if h.contains(':') { h.to_string() } else { format!("{h}:{}", args.port) })
        .collect();
    let seed_refs: Vec<&str> = seeds.iter().map(String::as_str).collect();
    let client = match &args.redis {
        Some(_) => None,
        None => {
            let policy = ClientPolicy { connections_per_node_max: args.concurrency.max(16), ..Default::default() };
            Some(Client::new(policy, &seed_refs).await.map_err(|e| format!("cannot connect to {}: {e}", args.hosts))?)
        }
    };
    if let (Workload::Query { .. }, Some(c)) = (&workload, &client) {
        crate::query_load::ensure_index(c, &args.namespace, &args.set).await?;
    }
    let target = match (&client, &args.redis) {
        (Some(c), _) => format!("{} Petrel node(s)", c.node_names().len()),
        (None, Some(r)) => format!("Redis at {r}"),
        (None, None) => String::new(),
    };
    eprintln!(
        "petrel-bench: {target}, workload {}, {} keys, object {}, {} in flight{}",
        args.workload,
        args.keys,
        args.object,
        args.concurrency,
        if args.rate > 0 { format!(", target {} ops/s", args.rate) } else { String::new() }
    );
    let start = Instant::now();
    let deadline = (workload != Workload::Insert).then(|| start + Duration::from_secs(args.duration_secs));
    let shared = Arc::new(Shared {
        args,
        workload,
        spec,
        client,
        filter,
        stop: AtomicBool::new(false),
        next_insert: AtomicU64::new(0),
    });
    let stats: Vec<Arc<Mutex<WorkerStats>>> =
        (0..shared.args.concurrency).map(|_| Arc::new(Mutex::new(WorkerStats::new()))).collect();
    let mut workers = tokio::task::JoinSet::new();
    for (id, s) in stats.iter().enumerate() {
        match &shared.args.redis {
            Some(addr) => {
                workers.spawn(redis_worker(Arc::clone(&shared), Arc::clone(s), id, deadline, start, addr.clone()))
            }
            None => workers.spawn(worker(Arc::clone(&shared), Arc::clone(s), id, deadline, start)),
        };
    }
    let mut interrupted = false;
    let mut tick =
        tokio::time::interval_at(tokio::time::Instant::now() + Duration::from_secs(1), Duration::from_secs(1));
    let mut last_tick = Instant::now();
    // Cumulative hits, misses, timeouts and errors per op at the previous status line.
    let mut prev = [[0u64; 4]; OPS.len()];
    loop {
        tokio::select! {
            done = workers.join_next() => {
                if done.is_none() { break; }
            }
            _ = tick.tick() => {
                let secs = last_tick.elapsed().as_secs_f64();
                last_tick = Instant::now();
                let mut line = format!("{:>5}s", start.elapsed().as_secs());
                for (o, name) in OPS.iter().enumerate() {
                    let (mut n, mut hits, mut misses, mut timeouts, mut errors) = (0u64, 0u64, 0u64, 0u64, 0u64);
                    let mut merged = OpStats::new().interval;
                    for s in &stats {
                        if let Ok(mut s) = s.lock() {
                            let op = &mut s.ops[o];
                            n += op.interval_count;
                            hits += op.hits;
                            misses += op.misses;
                            timeouts += op.timeouts;
                            errors += op.errors;
                            let _ = merged.add(&op.interval);
                            op.interval.reset();
                            op.interval_count = 0;
                        }
                    }
                    let now = [hits, misses, timeouts, errors];
                    let [hits, misses, timeouts, errors] = std::array::from_fn(|i| now[i] - prev[o][i]);
                    prev[o] = now;
                    if n == 0 { continue; }
                    line.push_str(&format!(
                        " | {name}: {:.0} ops/s (hits {hits} misses {misses} timeouts {timeouts} errors {errors}) p50 {}us p99 {}us max {}us",
                        n as f64 / secs, merged.value_at_quantile(0.5), merged.value_at_quantile(0.99), merged.max()
                    ));
                }
                println!("{line}");
            }
            _ = tokio::signal::ctrl_c() => {
                interrupted = true;
                shared.stop.store(true, Ordering::Relaxed);
                eprintln!("petrel-bench: interrupted; summary so far");
                // Let in-flight requests finish, bounded by their timeout.
                let _ = tokio::time::timeout(Duration::from_millis(shared.args.timeout_ms + 500), async { while workers.join_next().await.is_some() {} }).await;
                break;
            }
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let mut ops = BTreeMap::new();
    for (o, name) in OPS.iter().enumerate() {
        let mut total = OpStats::new();
        for s in &stats {
            if let Ok(s) = s.lock() {
                let op = &s.ops[o];
                let _ = total.total.add(&op.total);
                total.hits += op.hits;
                total.misses += op.misses;
                total.timeouts += op.timeouts;
                total.errors += op.errors;
            }
        }
        let count = total.total.len();
        if count == 0 {
            continue;
        }
        if let Some(dir) = &shared.args.hdr_hist {
            write_hdr(dir, name, &total.total).map_err(|e| format!("--hdr-hist {}: {e}", dir.display()))?;
        }
        ops.insert(
            name.to_string(),
            OpSummary {
                count,
                ops_per_sec: count as f64 / seconds,
                hits: total.hits,
                misses: total.misses,
                timeouts: total.timeouts,
                errors: total.errors,
                latency_us: pcts
                    .iter()
                    .map(|(label, p)| (label.clone(), total.total.value_at_percentile(*p)))
                    .collect(),
                latency_us_max: total.total.max(),
            },
        );
    }
    let a = &shared.args;
    Ok(Summary {
        workload: a.workload.clone(),
        object: a.object.clone(),
        keys: a.keys,
        concurrency: a.concurrency,
        target_rate: a.rate,
        seconds,
        interrupted,
        ops,
    })
}

fn write_hdr(dir: &std::path::Path, name: &str, h: &Histogram<u64>) -> Result<(), String> {
    use hdrhistogram::serialization::{Serializer, V2Serializer};
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    V2Serializer::new().serialize(h, &mut bytes).map_err(|e| format!("{e:?}"))?;
    std::fs::write(dir.join(format!("{name}.hdr")), bytes).map_err(|e| e.to_string())
}

fn print_summary(s: &Summary) {
    println!(
        "\nSummary: {:.1} s, workload {}, {} in flight{}",
        s.seconds,
        s.workload,
        s.concurrency,
        if s.interrupted { " (interrupted)" } else { "" }
    );
    for (name, op) in &s.ops {
        let lat: Vec<String> = op.latency_us.iter().map(|(p, v)| format!("p{p} {v}us")).collect();
        println!(
            "  {name:<6} {:>10} ops  {:>10.0} ops/s  hits {} misses {} timeouts {} errors {}  {}  max {}us",
            op.count,
            op.ops_per_sec,
            op.hits,
            op.misses,
            op.timeouts,
            op.errors,
            lat.join(" "),
            op.latency_us_max
        );
    }
}

/// Runs `petrel-bench` with the process's arguments.
pub fn main() -> ExitCode {
    let args = Args::parse();
    let json = args.output_json.clone();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("petrel-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(summary) => {
            print_summary(&summary);
            if let Some(path) = json {
                let text = serde_json::to_string_pretty(&summary).unwrap_or_default();
                if let Err(e) = std::fs::write(&path, text) {
                    eprintln!("petrel-bench: --output-json {}: {e}", path.display());
                    return ExitCode::FAILURE;
                }
            }
            if summary.ops.values().any(|o| o.errors > 0) {
                ExitCode::from(3)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("petrel-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workloads_and_objects_parse() {
        assert_eq!(Workload::parse("I"), Ok(Workload::Insert));
        assert_eq!(Workload::parse("RU,80"), Ok(Workload::ReadUpdate { read_pct: 80 }));
        assert_eq!(Workload::parse("RUD,50,30"), Ok(Workload::ReadUpdateDelete { read_pct: 50, write_pct: 30 }));
        assert!(Workload::parse("RU,101").is_err());
        assert!(Workload::parse("RUD,80,30").is_err());
        assert!(Workload::parse("XX").is_err());
        assert_eq!(
            parse_object("I,S10,B100,D"),
            Ok(vec![BinSpec::Int, BinSpec::Str(10), BinSpec::Blob(100), BinSpec::Double])
        );
        assert!(parse_object("Q").is_err());
        assert!(percentiles("50,99.9").is_ok() && percentiles("101").is_err());
    }
}
