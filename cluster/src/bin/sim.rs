//! Runs the cluster simulator's seeds (see `petrel_cluster::sim`): one seed to replay it, or
//! a range of seeds on several threads; exits non-zero on the first failing seed, naming it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{bail, Result};
use clap::Parser;
use petrel_cluster::sim;

#[derive(Parser, Debug)]
#[command(about = "Runs Petrel's seeded cluster simulation")]
struct Args {
    /// Replay this one seed and print its report.
    #[arg(long)]
    seed: Option<u64>,
    /// Run this many seeds, from --first.
    #[arg(long, default_value_t = 100)]
    seeds: u64,
    #[arg(long, default_value_t = 0)]
    first: u64,
    /// Steps (10 virtual ms each) of faults and load per seed.
    #[arg(long, default_value_t = 10_000)]
    steps: usize,
    /// Threads running seeds (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Where the nodes keep their records: `memory`, or `device` (an in-memory disk per
    /// machine, kept across crashes; whole-cluster crashes are scheduled too).
    #[arg(long, default_value = "memory", value_parser = ["memory", "device"])]
    storage: String,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let storage = if args.storage == "device" { sim::Storage::Device } else { sim::Storage::Memory };
    if let Some(seed) = args.seed {
        let report = sim::run_on(seed, args.steps, storage).map_err(anyhow::Error::msg)?;
        println!("{report:?}");
        return Ok(());
    }
    let threads = match args.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let started = Instant::now();
    let next = AtomicU64::new(args.first);
    let failed = AtomicBool::new(false);
    let totals: [AtomicU64; 4] = Default::default();
    let first_failure = parking_lot::Mutex::new(None::<String>);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= args.first + args.seeds || failed.load(Ordering::Relaxed) {
                    return;
                }
                match sim::run_on(seed, args.steps, storage) {
                    Ok(r) => {
                        totals[0].fetch_add(r.acked, Ordering::Relaxed);
                        totals[1].fetch_add(r.crashes + r.pauses + r.splits + r.one_way_cuts, Ordering::Relaxed);
                        totals[2].fetch_add(1, Ordering::Relaxed);
                        totals[3].fetch_add(r.records_kept_at_rejoin, Ordering::Relaxed);
                    }
                    Err(e) => {
                        failed.store(true, Ordering::Relaxed);
                        first_failure.lock().get_or_insert(e);
                    }
                }
            });
        }
    });
    if let Some(e) = first_failure.into_inner() {
        bail!(
            "{e}\nreplay: cargo run --release -p petrel-cluster --features sim --bin sim -- --seed <seed> --steps {} \
             --storage {}",
            args.steps,
            args.storage
        );
    }
    println!(
        "{} seeds of {} steps passed in {:.1} s: {} writes acknowledged, {} disruptions, {} records kept current \
         by restarted nodes (not sent again)",
        totals[2].load(Ordering::Relaxed),
        args.steps,
        started.elapsed().as_secs_f64(),
        totals[0].load(Ordering::Relaxed),
        totals[1].load(Ordering::Relaxed),
        totals[3].load(Ordering::Relaxed)
    );
    Ok(())
}
