//! The `petrel-info` command line: sends info commands to one or more nodes and prints the answers, the way
//! `asinfo` users expect: the bare value for one host, `-l` to put each `;`-separated item on
//! its own line, a non-zero exit status when a node cannot be reached or answers an error.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use petrel_proto::message::ProtoHeader;
use petrel_proto::wire::{FrameType, PROTO_HEADER_LEN};

/// Largest info answer accepted (a node's full statistics are a few KiB).
const ANSWER_SIZE_MAX: u64 = 16 << 20;

#[derive(Debug, Parser)]
#[command(
    name = "petrel-info",
    version,
    disable_help_flag = true,
    about = "Send info commands to Petrel (or Aerospike) nodes"
)]
struct Args {
    /// Host to ask (repeatable; host or host:port).
    #[arg(short = 'h', long = "host", default_value = "127.0.0.1")]
    hosts: Vec<String>,
    /// Port used for hosts given without one.
    #[arg(short = 'p', long = "port", default_value_t = 3000)]
    port: u16,
    /// The info command; without it, `status` is asked.
    #[arg(short = 'v', long = "value")]
    command: Option<String>,
    /// Print each `;`-separated item on its own line.
    #[arg(short = 'l', long = "lines")]
    lines: bool,
    /// Timeout in milliseconds for connecting and for the answer.
    #[arg(short = 't', long = "timeout", default_value_t = 5000)]
    timeout_ms: u64,
    /// Print help.
    #[arg(long = "help", action = clap::ArgAction::Help)]
    help: Option<bool>,
}

/// Sends one info command to `addr` (`host:port`) and returns its value.
pub fn ask(addr: &str, command: &str, timeout: Duration) -> Result<String, String> {
    let sock = addr
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {addr}: {e}"))?
        .next()
        .ok_or_else(|| format!("{addr} resolves to nothing"))?;
    let mut stream =
        TcpStream::connect_timeout(&sock, timeout).map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    stream.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    stream.set_write_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    let body = format!("{command}\n");
    let mut frame = ProtoHeader::encode(FrameType::Info as u8, body.len() as u64).to_vec();
    frame.extend_from_slice(body.as_bytes());
    stream.write_all(&frame).map_err(|e| format!("send to {addr}: {e}"))?;
    let mut header = [0u8; PROTO_HEADER_LEN];
    stream.read_exact(&mut header).map_err(|e| format!("answer from {addr}: {e}"))?;
    let h = ProtoHeader::parse(header, ANSWER_SIZE_MAX).map_err(|e| format!("answer from {addr}: {e}"))?;
    if h.frame_type != FrameType::Info as u8 {
        return Err(format!("answer from {addr}: frame type {} is not info", h.frame_type));
    }
    let mut answer = vec![0u8; h.size as usize];
    stream.read_exact(&mut answer).map_err(|e| format!("answer from {addr}: {e}"))?;
    let text = String::from_utf8_lossy(&answer);
    // `<command>\t<value>\n`: keep the value.
    let line = text.trim_end_matches('\n');
    Ok(line.split_once('\t').map_or(line, |(_, v)| v).to_string())
}

/// Runs `petrel-info` with the process's arguments.
pub fn main() -> ExitCode {
    let args = Args::parse();
    let command = args.command.as_deref().unwrap_or("status");
    let timeout = Duration::from_millis(args.timeout_ms.max(1));
    let many = args.hosts.len() > 1;
    let mut failed = false;
    for host in &args.hosts {
        let addr =
            if host.contains(':') && !host.starts_with('[') { host.clone() } else { format!("{host}:{}", args.port) };
        match ask(&addr, command, timeout) {
            Ok(value) => {
                if many {
                    println!("{addr} ({command}):");
                }
                if value.starts_with("ERROR") {
                    failed = true;
                }
                if args.lines {
                    for item in value.split(';').filter(|s| !s.is_empty()) {
                        println!("{item}");
                    }
                } else {
                    println!("{value}");
                }
            }
            Err(e) => {
                eprintln!("petrel-info: {e}");
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
