//! A history test on real processes. Clients append unique elements to list records and
//! record every invocation and its outcome (ok, failed, indeterminate) with no hidden retries,
//! while a nemesis pauses nodes past the node timeout (SIGSTOP for 3 s and for 10 s), kills
//! and restarts one (SIGKILL), and has a node join and leave. The checker then reads every
//! record back: every acknowledged append present, none twice, nothing that was never
//! invoked, and two copies of every record on its owners.
//!
//! It guards the defects a stalled or joining node caused: a paused node forming a cluster of
//! its own and taking writes the merge then dropped, a node back on a view the others left
//! installing no plan, a join leaving a live member out.
//!
//! `PETREL_HISTORY_ROUNDS` (default 1) repeats the nemesis schedule: the long run is
//! `PETREL_HISTORY_ROUNDS=20 cargo test -p petrel-tests --release --test history`.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use petrel_client::operation::lists;
use petrel_client::policy::BasePolicy;
use petrel_client::*;
use petrel_tests::cluster::TestCluster;
use petrel_tests::petreld_path;

/// Records the clients append to.
const RECORDS: u64 = 64;
/// Clients appending at once.
const CLIENTS: u64 = 4;

/// What happened to one append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ok,
    /// The server said it did not apply it.
    Failed,
    /// No answer, or an answer that does not say (timeouts, connection errors, a replica
    /// write that did not complete): it may or may not have been applied.
    Indeterminate,
}

fn key(r: u64) -> Key {
    Key::new("test", "history", format!("r{r}")).expect("key")
}

/// One try per invocation: a retry would be an invocation the history does not show.
fn one_try() -> BasePolicy {
    BasePolicy {
        total_timeout: Duration::from_secs(2),
        socket_timeout: Duration::from_secs(2),
        max_retries: 0,
        ..BasePolicy::default()
    }
}

fn outcome_of(r: &Result<Record, Error>) -> Outcome {
    match r {
        Ok(_) => Outcome::Ok,
        // Refusals before anything was applied: never sent (no node), the partition
        // unavailable, or a request the server refused (parameter, bin type). A write applied
        // on its master whose copies did not all land is answered "timeout": in doubt.
        Err(Error::NoNode { .. }) => Outcome::Failed,
        Err(Error::Server { code }) if [4, 11, 12].contains(code) => Outcome::Failed,
        Err(_) => Outcome::Indeterminate,
    }
}

/// Appends until `stop`; returns (record, element, outcome) for every invocation.
async fn client_loop(client: Arc<Client>, id: u64, stop: Arc<AtomicBool>) -> Vec<(u64, i64, Outcome)> {
    let policy = WritePolicy { base: one_try(), ..WritePolicy::default() };
    let mut history = Vec::new();
    let mut seq = 0u64;
    // A small deterministic generator: which record each append goes to.
    let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ id;
    while !stop.load(Ordering::Relaxed) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let record = x % RECORDS;
        let element = ((id << 40) | seq) as i64;
        seq += 1;
        let r = client.operate(&policy, &key(record), &[lists::append("l", &Value::Int(element))]).await;
        let outcome = outcome_of(&r);
        if outcome != Outcome::Ok {
            // Errors come in bursts while a node is paused: do not spin on them.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        history.push((record, element, outcome));
    }
    history
}

/// The nemesis: one round of pauses, a kill and restart, and a join and leave.
fn nemesis_round(cluster: &mut TestCluster, round: usize) {
    let settle = Duration::from_secs(90);
    let pause = |cluster: &TestCluster, i: usize, secs: u64| {
        eprintln!("round {round}: pausing node {i} for {secs} s");
        cluster.pause(i);
        std::thread::sleep(Duration::from_secs(secs));
        cluster.resume(i);
        cluster.wait_settled(3, settle);
    };
    pause(cluster, 1, 3);
    eprintln!("round {round}: killing node 2");
    cluster.kill9(2);
    cluster.wait_settled(2, settle);
    cluster.restart(2);
    cluster.wait_settled(3, settle);
    pause(cluster, 0, 10);
    eprintln!("round {round}: a fourth node joins, then leaves");
    if cluster.specs.len() < 4 {
        cluster.add_node();
    } else {
        cluster.restart(3);
    }
    cluster.wait_settled(4, settle);
    cluster.stop(3);
    cluster.wait_settled(3, settle);
}

#[test]
fn appends_acknowledged_through_pauses_kills_and_joins_are_all_kept() {
    let rounds: usize = std::env::var("PETREL_HISTORY_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    let mut cluster = TestCluster::start(&petreld_path!(), 3, 2, &[]);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let seeds = cluster.seeds();
    let client = rt.block_on(async {
        let policy = ClientPolicy { tend_interval: Duration::from_millis(200), ..ClientPolicy::default() };
        let seeds: Vec<&str> = seeds.iter().map(String::as_str).collect();
        Arc::new(Client::new(policy, &seeds).await.expect("connect"))
    });
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> =
        (0..CLIENTS).map(|id| rt.spawn(client_loop(Arc::clone(&client), id, Arc::clone(&stop)))).collect();
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    for round in 0..rounds {
        nemesis_round(&mut cluster, round);
    }
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    let history: Vec<(u64, i64, Outcome)> = clients.into_iter().flat_map(|c| rt.block_on(c).expect("client")).collect();
    let elapsed = started.elapsed();
    cluster.wait_settled(3, Duration::from_secs(90));

    // Read every record back (reads may retry: they change nothing).
    let read_policy = ReadPolicy {
        base: BasePolicy { total_timeout: Duration::from_secs(10), max_retries: 20, ..BasePolicy::default() },
    };
    let lists: HashMap<u64, Vec<i64>> = rt.block_on(
        futures::stream::iter(0..RECORDS)
            .map(|r| {
                let (client, policy) = (Arc::clone(&client), read_policy.clone());
                async move {
                    let elements = match client.get(&policy, &key(r), Bins::All).await {
                        Ok(rec) => match rec.bin("l") {
                            Some(Value::List(v)) => v.iter().filter_map(Value::as_int).collect(),
                            other => panic!("record r{r}: bin l is {other:?}"),
                        },
                        Err(e) if e.is_not_found() => Vec::new(),
                        Err(e) => panic!("record r{r} unreadable after the cluster settled: {e}"),
                    };
                    (r, elements)
                }
            })
            .buffer_unordered(8)
            .collect(),
    );

    let count = |o: Outcome| history.iter().filter(|h| h.2 == o).count();
    let (ok, failed, indeterminate) = (count(Outcome::Ok), count(Outcome::Failed), count(Outcome::Indeterminate));
    eprintln!(
        "history: {} appends in {elapsed:?} over {rounds} round(s): {ok} ok, {failed} failed, {indeterminate} indeterminate",
        history.len()
    );
    let invoked: HashMap<i64, (u64, Outcome)> = history.iter().map(|&(r, e, o)| (e, (r, o))).collect();
    let mut lost = Vec::new();
    for &(r, e, o) in &history {
        if o == Outcome::Ok && !lists[&r].contains(&e) {
            lost.push((r, e));
        }
    }
    let mut duplicated = Vec::new();
    let mut phantom = Vec::new();
    let mut wrongly_failed = Vec::new();
    for (&r, elements) in &lists {
        let mut seen = HashSet::new();
        for &e in elements {
            if !seen.insert(e) {
                duplicated.push((r, e));
            }
            match invoked.get(&e) {
                Some(&(record, o)) if record == r => {
                    if o == Outcome::Failed {
                        wrongly_failed.push((r, e));
                    }
                }
                _ => phantom.push((r, e)),
            }
        }
    }
    assert!(ok > 500, "the clients kept appending: {ok} acknowledged");
    assert!(lost.is_empty(), "{} acknowledged appends lost, e.g. {:?}", lost.len(), &lost[..lost.len().min(5)]);
    assert!(duplicated.is_empty(), "appended twice: {:?}", &duplicated[..duplicated.len().min(5)]);
    assert!(phantom.is_empty(), "never appended there: {:?}", &phantom[..phantom.len().min(5)]);
    assert!(
        wrongly_failed.is_empty(),
        "answered as failed but applied: {:?}",
        &wrongly_failed[..wrongly_failed.len().min(5)]
    );
    // Both copies of every record, on its owners only.
    assert_eq!(cluster.sum_ns_stat("test", "objects"), 2 * RECORDS);
    assert_eq!(cluster.sum_ns_stat("test", "non_replica_objects"), 0);
}
