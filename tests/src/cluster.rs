//! Multi-node clusters on loopback for integration tests: each node on its own 127.0.0.x
//! address with free ports for service, fabric and heartbeat, all seeded from the first node.
//! Nodes are stopped by pid when the cluster is dropped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::{free_port, info, stat, Petreld};

/// Where one node listens; kept across restarts so that a node comes back where it was.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub service: SocketAddr,
    pub fabric: SocketAddr,
    pub heartbeat: SocketAddr,
}

/// A cluster of `petreld` processes.
#[derive(Debug)]
pub struct TestCluster {
    bin: PathBuf,
    rf: u8,
    extra: Vec<String>,
    pub specs: Vec<NodeSpec>,
    pub nodes: Vec<Option<Petreld>>,
    /// With a data directory per node under it (`node-<i>`): device namespaces that outlive
    /// restarts.
    data_root: Option<PathBuf>,
}

impl TestCluster {
    /// Starts `n` nodes with replication factor `rf` and waits until they form one settled
    /// cluster.
    pub fn start(bin: &Path, n: usize, rf: u8, extra: &[&str]) -> TestCluster {
        Self::start_with_data(bin, n, rf, extra, None)
    }

    /// [`TestCluster::start`], each node with a data directory under `data_root` (kept
    /// across its restarts).
    pub fn start_with_data(bin: &Path, n: usize, rf: u8, extra: &[&str], data_root: Option<PathBuf>) -> TestCluster {
        let mut c = TestCluster {
            bin: bin.to_path_buf(),
            rf,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            specs: Vec::new(),
            nodes: Vec::new(),
            data_root,
        };
        for _ in 0..n {
            c.add_node();
        }
        c.wait_settled(n, Duration::from_secs(30));
        c
    }

    /// Starts one more node (seeded with the first node's heartbeat only); returns its index.
    pub fn add_node(&mut self) -> usize {
        let i = self.specs.len();
        // 127.0.0.10, .11, ...: distinct addresses, as distinct hosts would have.
        let ip = format!("127.0.0.{}", 10 + i);
        let spec = NodeSpec {
            service: format!("{ip}:{}", free_port()).parse().expect("addr"),
            fabric: format!("{ip}:{}", free_port()).parse().expect("addr"),
            heartbeat: format!("{ip}:{}", free_port()).parse().expect("addr"),
        };
        self.specs.push(spec);
        self.nodes.push(None);
        self.restart(i);
        i
    }

    /// (Re)starts node `i` where it listened before.
    pub fn restart(&mut self, i: usize) {
        let spec = self.specs[i].clone();
        let seed = self.specs[0].heartbeat.to_string();
        let (hb, fabric, rf) = (spec.heartbeat.to_string(), spec.fabric.to_string(), self.rf.to_string());
        let mut args: Vec<&str> = vec![
            "--heartbeat",
            &hb,
            "--fabric",
            &fabric,
            "--seed",
            &seed,
            "--cluster-name",
            "petrel-test",
            "--replication-factor",
            &rf,
        ];
        let data_dir = self.data_root.as_ref().map(|r| r.join(format!("node-{i}")).to_string_lossy().into_owned());
        if let Some(d) = &data_dir {
            args.extend(["--data-dir", d.as_str()]);
        }
        args.extend(self.extra.iter().map(String::as_str));
        // PETREL_TEST_LOG raises the nodes' log level when a run needs diagnosing.
        let log = std::env::var("PETREL_TEST_LOG").unwrap_or_else(|_| "warn".to_string());
        let env = [("PETREL_LOG", log.as_str())];
        self.nodes[i] = Some(Petreld::start_at(&self.bin, spec.service, &args, &env));
    }

    /// SIGKILL to node `i`.
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut p) = self.nodes[i].take() {
            p.kill9();
        }
    }

    /// SIGTERM to node `i`; waits for it to exit (bounded).
    pub fn stop(&mut self, i: usize) {
        if let Some(mut p) = self.nodes[i].take() {
            if p.terminate(Duration::from_secs(10)).is_none() {
                p.kill9();
            }
        }
    }

    /// SIGTERM to nodes `which` at once (as a scale-down does); waits (at most `timeout` in
    /// all) for each to exit and returns their exit codes (`None`: killed after the timeout).
    pub fn stop_together(&mut self, which: &[usize], timeout: Duration) -> Vec<Option<i32>> {
        let deadline = Instant::now() + timeout;
        let mut stopping: Vec<Petreld> = which.iter().filter_map(|&i| self.nodes[i].take()).collect();
        for p in &stopping {
            // A paused node would hold SIGTERM until resumed; a node that already exited
            // answers nothing, and is collected below.
            for signal in ["-CONT", "-TERM"] {
                let _ = std::process::Command::new("kill").arg(signal).arg(p.pid().to_string()).status();
            }
        }
        stopping
            .iter_mut()
            .map(|p| match p.terminate(deadline.saturating_duration_since(Instant::now())) {
                Some(status) => status.code(),
                None => {
                    p.kill9();
                    None
                }
            })
            .collect()
    }

    /// SIGSTOP to node `i`: it neither runs nor answers until [`TestCluster::resume`].
    pub fn pause(&self, i: usize) {
        if let Some(p) = &self.nodes[i] {
            p.signal("STOP");
        }
    }

    /// SIGCONT to node `i`.
    pub fn resume(&self, i: usize) {
        if let Some(p) = &self.nodes[i] {
            p.signal("CONT");
        }
    }

    pub fn running(&self) -> impl Iterator<Item = &Petreld> {
        self.nodes.iter().flatten()
    }

    /// Service addresses of the running nodes, as client seeds.
    pub fn seeds(&self) -> Vec<String> {
        self.running().map(|p| p.seed()).collect()
    }

    /// Waits until every running node reports a cluster of `size` with nothing left to
    /// migrate; returns how long it took. Panics after `timeout`.
    pub fn wait_settled(&self, size: usize, timeout: Duration) -> Duration {
        let started = Instant::now();
        loop {
            let stable: Vec<String> =
                self.running().map(|p| info(p.addr, &format!("cluster-stable:size={size}"))).collect();
            if stable.iter().all(|a| !a.starts_with("ERROR")) && stable.windows(2).all(|w| w[0] == w[1]) {
                return started.elapsed();
            }
            assert!(started.elapsed() < timeout, "cluster not settled within {timeout:?}: {stable:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sum of a namespace statistic over the running nodes.
    pub fn sum_ns_stat(&self, ns: &str, key: &str) -> u64 {
        self.running()
            .map(|p| stat(&info(p.addr, &format!("namespace/{ns}")), key).and_then(|v| v.parse().ok()).unwrap_or(0))
            .sum()
    }

    /// A node statistic of each running node.
    pub fn node_stats(&self, key: &str) -> Vec<u64> {
        self.running()
            .map(|p| stat(&info(p.addr, "statistics"), key).and_then(|v| v.parse().ok()).unwrap_or(0))
            .collect()
    }
}

impl Drop for TestCluster {
    /// Stops every node at once: a whole cluster told to stop has no one to hand partitions
    /// to, so its nodes exit without waiting for each other.
    fn drop(&mut self) {
        let all: Vec<usize> = (0..self.nodes.len()).collect();
        self.stop_together(&all, Duration::from_secs(20));
    }
}
