//! Test harness: starts real `petreld` processes on loopback ports and stops them by pid.
//!
//! Every wait is bounded; a process that does not stop on SIGTERM in time is killed.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub mod cluster;

/// Path of the server binary: `PETREL_BIN` when set, else this package's `petreld-test`,
/// which cargo builds from the current sources before the tests run (it is `petreld`'s
/// command line, linked into this package so that it can never be stale). A macro, because
/// only integration tests know where cargo put that binary.
#[macro_export]
macro_rules! petreld_path {
    () => {
        match std::env::var("PETREL_BIN") {
            Ok(p) => std::path::PathBuf::from(p),
            Err(_) => std::path::PathBuf::from(env!("CARGO_BIN_EXE_petreld-test")),
        }
    };
}

/// Runs a tool binary with `args`; returns its exit code, stdout and stderr.
pub fn run_tool(bin: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin).args(args).output().unwrap_or_else(|e| panic!("run {bin}: {e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Test ports come from below the kernel's ephemeral range (32 768 and up by default): a
/// port the kernel hands out for `bind(0)` can be taken by any outgoing connection between
/// this check and the server binding it, and the server then fails to start, or a client
/// reaches another test's server on it.
const PORTS_FIRST: u32 = 20_000;
const PORTS_COUNT: u32 = 12_000;

/// A free loopback port, each handed out once per test process (a counter from a start
/// that differs between processes), checked free by binding it.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let start = || {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        (std::process::id().wrapping_mul(7_919) ^ nanos) % PORTS_COUNT
    };
    let _ = NEXT.compare_exchange(u32::MAX, start(), Ordering::Relaxed, Ordering::Relaxed);
    // Bounded: one pass over the range.
    for _ in 0..PORTS_COUNT {
        let port = (PORTS_FIRST + NEXT.fetch_add(1, Ordering::Relaxed) % PORTS_COUNT) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {PORTS_FIRST}..{}", PORTS_FIRST + PORTS_COUNT)
}

/// Where a node's log goes: the test's stderr, or with `PETREL_TEST_LOG_DIR` set, a file of
/// its own there (`<address>.log`, appended across restarts), so that the logs of a
/// multi-node run can be told apart when diagnosing it.
fn node_log(addr: SocketAddr) -> Stdio {
    let Ok(dir) = std::env::var("PETREL_TEST_LOG_DIR") else { return Stdio::inherit() };
    let path = Path::new(&dir).join(format!("{addr}.log"));
    match std::fs::OpenOptions::new().create(true).append(true).open(&path) {
        Ok(f) => Stdio::from(f),
        Err(e) => panic!("node log {}: {e}", path.display()),
    }
}

/// A running petreld; stopped (SIGTERM, then SIGKILL after 10 s) when dropped.
#[derive(Debug)]
pub struct Petreld {
    child: Child,
    pub addr: SocketAddr,
}

impl Petreld {
    /// Starts the server binary `bin` on a free port with extra flags and environment, and
    /// waits (at most 20 s) until it accepts connections.
    pub fn start(bin: &Path, extra_args: &[&str], env: &[(&str, &str)]) -> Petreld {
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        Petreld::start_at(bin, addr, extra_args, env)
    }

    /// Starts the server binary `bin` serving on `addr`, and waits (at most 20 s) until it
    /// accepts connections.
    pub fn start_at(bin: &Path, addr: SocketAddr, extra_args: &[&str], env: &[(&str, &str)]) -> Petreld {
        let mut cmd = Command::new(bin);
        cmd.arg("--listen").arg(addr.to_string()).args(extra_args).stdout(Stdio::null()).stderr(node_log(addr));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn petreld");
        let mut p = Petreld { child, addr };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Ok(Some(status)) = p.child.try_wait() {
                panic!("petreld exited early: {status}");
            }
            assert!(Instant::now() < deadline, "petreld did not start listening within 20 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        p
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the process with SIGKILL and reaps it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The seed string for clients.
    pub fn seed(&self) -> String {
        self.addr.to_string()
    }

    /// Sends `signal` (a name `kill` knows: STOP, CONT, ...) to the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill").arg(format!("-{signal}")).arg(self.pid().to_string()).status();
        assert!(status.is_ok_and(|s| s.success()), "kill -{signal} {}", self.pid());
    }

    /// Sends SIGTERM and waits (at most `timeout`) for the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill").arg("-TERM").arg(self.pid().to_string()).status();
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Asks one info command over a raw connection.
    pub fn info(&self, command: &str) -> String {
        info(self.addr, command)
    }
}

impl Drop for Petreld {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        // A paused process would hold SIGTERM until killed: let it run first.
        let _ = Command::new("kill").arg("-CONT").arg(self.pid().to_string()).status();
        if self.terminate(Duration::from_secs(10)).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Sends one info command to `addr` and returns its value (through `petrel-info`'s code).
pub fn info(addr: SocketAddr, command: &str) -> String {
    petrel_bench::info_cli::ask(&addr.to_string(), command, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("info {command:?} to {addr}: {e}"))
}

/// The value of `key` in a `k=v;k=v` answer.
pub fn stat(answer: &str, key: &str) -> Option<String> {
    answer.split(';').filter_map(|kv| kv.split_once('=')).find(|(k, _)| *k == key).map(|(_, v)| v.to_string())
}
