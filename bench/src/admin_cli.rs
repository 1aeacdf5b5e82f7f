//! The `petrel-admin` command line, asadm-like and non-interactive: finds every node of the
//! cluster from one seed (its `peers-clear-std` answer), asks each the info commands a view
//! needs, and prints a table per view with a row per node (then totals where they add up), or
//! JSON with `-j` for scripts. Views (`-e`): `info` (nodes: id, address, build, cluster size,
//! key, principal, uptime, connections, migrations), `summary` (the cluster: nodes, namespaces
//! with replication factor, objects, memory and device use, migrations), `show stat [like X]`,
//! `show latencies`, `show config`.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use crate::info_cli::ask;

#[derive(Debug, Parser)]
#[command(name = "petrel-admin", version, disable_help_flag = true, about = "Look at a Petrel cluster from one seed")]
struct Args {
    /// Seed node (host or host:port).
    #[arg(short = 'h', long = "host", default_value = "127.0.0.1")]
    host: String,
    /// Port for a seed given without one.
    #[arg(short = 'p', long = "port", default_value_t = 3000)]
    port: u16,
    /// What to show: info, summary, show stat [like X], show latencies, show config.
    #[arg(short = 'e', long = "execute", default_value = "info")]
    execute: String,
    /// JSON instead of tables.
    #[arg(short = 'j', long = "json")]
    json: bool,
    /// Timeout in milliseconds per info request.
    #[arg(short = 't', long = "timeout", default_value_t = 5000)]
    timeout_ms: u64,
    /// Print help.
    #[arg(long = "help", action = clap::ArgAction::Help)]
    help: Option<bool>,
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// `key=value` pairs of an info answer, in answer order.
fn pairs(answer: &str) -> Vec<(String, String)> {
    answer.split(';').filter_map(|p| p.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// The seed, then every peer it names (`[id,,[host:port]]` items of `peers-clear-std`).
fn discover(seed: &str, timeout: Duration) -> Result<Vec<String>, String> {
    let answer = ask(seed, "peers-clear-std", timeout)?;
    let mut nodes = vec![seed.to_string()];
    for item in answer.split("[[").skip(1).flat_map(|s| s.split(",[")) {
        let addr = item.trim_start_matches('[').split(']').next().unwrap_or("");
        if addr.contains(':') && !nodes.iter().any(|n| n == addr) {
            nodes.push(addr.to_string());
        }
    }
    Ok(nodes)
}

/// One node's answers to `commands`; an unreachable node answers errors.
fn gather(node: &str, commands: &[String], timeout: Duration) -> BTreeMap<String, String> {
    commands.iter().map(|c| (c.clone(), ask(node, c, timeout).unwrap_or_else(|e| format!("ERROR::{e}")))).collect()
}

/// A table: a header row, then rows, columns padded to their widest cell.
fn table(title: &str, header: &[String], rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..header.len())
        .map(|i| rows.iter().map(|r| r.get(i).map_or(0, String::len)).chain([header[i].len()]).max().unwrap_or(0))
        .collect();
    let line = |cells: &[String]| -> String {
        cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect::<Vec<_>>().join("  ").trim_end().to_string()
    };
    let mut out = format!("~~~ {title} ~~~\n{}\n", line(header));
    for r in rows {
        out.push_str(&line(r));
        out.push('\n');
    }
    out
}

fn number(map: &[(String, String)], key: &str) -> u64 {
    map.iter().find(|(k, _)| k == key).and_then(|(_, v)| v.parse().ok()).unwrap_or(0)
}

fn value<'a>(map: &'a [(String, String)], key: &str) -> &'a str {
    map.iter().find(|(k, _)| k == key).map_or("", |(_, v)| v.as_str())
}

/// What one run prints: text, or JSON.
struct View {
    text: String,
    json: serde_json::Value,
}

fn info_view(nodes: &[String], timeout: Duration) -> View {
    let commands = strings(&["node", "build", "statistics"]);
    let header = strings(&[
        "Node",
        "Node ID",
        "Build",
        "Cluster Size",
        "Cluster Key",
        "Principal",
        "Uptime (s)",
        "Client Conns",
        "Migrations",
    ]);
    let mut rows = Vec::new();
    let mut json = Vec::new();
    for n in nodes {
        let a = gather(n, &commands, timeout);
        let st = pairs(&a["statistics"]);
        let row = vec![
            n.clone(),
            a["node"].clone(),
            a["build"].clone(),
            value(&st, "cluster_size").to_string(),
            value(&st, "cluster_key").to_string(),
            value(&st, "cluster_principal").to_string(),
            value(&st, "uptime").to_string(),
            value(&st, "client_connections").to_string(),
            value(&st, "migrate_partitions_remaining").to_string(),
        ];
        json.push(serde_json::json!(header.iter().cloned().zip(row.iter().cloned()).collect::<BTreeMap<_, _>>()));
        rows.push(row);
    }
    View { text: table("Network Information", &header, &rows), json: serde_json::json!({ "nodes": json }) }
}

fn summary_view(nodes: &[String], timeout: Duration) -> View {
    let namespaces: Vec<String> = ask(&nodes[0], "namespaces", timeout)
        .map(|a| a.split(';').filter(|s| !s.is_empty()).map(str::to_string).collect())
        .unwrap_or_default();
    let mut commands = vec!["statistics".to_string()];
    commands.extend(namespaces.iter().map(|ns| format!("namespace/{ns}")));
    let answers: Vec<BTreeMap<String, String>> = nodes.iter().map(|n| gather(n, &commands, timeout)).collect();
    let reachable = answers.iter().filter(|a| !a["statistics"].starts_with("ERROR")).count();
    let first = pairs(&answers[0]["statistics"]);
    let migrations: u64 =
        answers.iter().map(|a| number(&pairs(&a["statistics"]), "migrate_partitions_remaining")).sum();
    let mut text = format!(
        "~~~ Cluster Summary ~~~\nCluster Size:        {}\nNodes Reachable:     {reachable} of {}\nCluster Key:         {}\nMigrations Pending:  {migrations}\n",
        value(&first, "cluster_size"),
        nodes.len(),
        value(&first, "cluster_key")
    );
    let header = strings(&[
        "Namespace",
        "Storage",
        "Repl Factor",
        "Objects",
        "Master Objects",
        "Memory Used",
        "Device Used",
        "Migrations",
    ]);
    let mut rows = Vec::new();
    let mut json_ns = Vec::new();
    for ns in &namespaces {
        let key = format!("namespace/{ns}");
        let per_node: Vec<Vec<(String, String)>> = answers.iter().map(|a| pairs(&a[&key])).collect();
        let sum = |k: &str| per_node.iter().map(|p| number(p, k)).sum::<u64>();
        let row = vec![
            ns.clone(),
            value(&per_node[0], "storage-engine").to_string(),
            value(&per_node[0], "effective_replication_factor").to_string(),
            sum("objects").to_string(),
            sum("master_objects").to_string(),
            sum("memory_used_bytes").to_string(),
            sum("device_used_bytes").to_string(),
            (sum("migrate_tx_partitions_remaining") + sum("migrate_rx_partitions_remaining")).to_string(),
        ];
        json_ns.push(serde_json::json!(header.iter().cloned().zip(row.iter().cloned()).collect::<BTreeMap<_, _>>()));
        rows.push(row);
    }
    text.push('\n');
    text.push_str(&table("Namespaces (totals over the nodes)", &header, &rows));
    let json = serde_json::json!({
        "cluster_size": number(&first, "cluster_size"),
        "nodes": nodes,
        "nodes_reachable": reachable,
        "cluster_key": value(&first, "cluster_key"),
        "migrations_pending": migrations,
        "namespaces": json_ns,
    });
    View { text, json }
}

/// `show stat [like X]`: node statistics, then each namespace's, a column per node.
fn stat_view(nodes: &[String], like: Option<&str>, timeout: Duration) -> View {
    let namespaces: Vec<String> = ask(&nodes[0], "namespaces", timeout)
        .map(|a| a.split(';').filter(|s| !s.is_empty()).map(str::to_string).collect())
        .unwrap_or_default();
    let mut sections = vec![("Service Statistics".to_string(), "statistics".to_string())];
    sections.extend(namespaces.iter().map(|ns| (format!("{ns} Namespace Statistics"), format!("namespace/{ns}"))));
    let mut text = String::new();
    let mut json = serde_json::Map::new();
    for (title, command) in sections {
        let per_node: Vec<Vec<(String, String)>> =
            nodes.iter().map(|n| pairs(&ask(n, &command, timeout).unwrap_or_default())).collect();
        let mut keys: Vec<&String> = per_node.iter().flat_map(|p| p.iter().map(|(k, _)| k)).collect();
        keys.dedup();
        let mut seen = std::collections::HashSet::new();
        keys.retain(|k| seen.insert(*k) && like.is_none_or(|l| k.contains(l)));
        let mut header = vec!["Statistic".to_string()];
        header.extend(nodes.iter().cloned());
        let rows: Vec<Vec<String>> = keys
            .iter()
            .map(|k| {
                let mut r = vec![k.to_string()];
                r.extend(per_node.iter().map(|p| value(p, k).to_string()));
                r
            })
            .collect();
        text.push_str(&table(&title, &header, &rows));
        text.push('\n');
        json.insert(
            command,
            serde_json::json!(rows.iter().map(|r| (r[0].clone(), r[1..].to_vec())).collect::<BTreeMap<_, _>>()),
        );
    }
    View { text, json: serde_json::Value::Object(json) }
}

/// `show latencies` / `show config`: one info command per node, printed as returned.
fn per_node_view(nodes: &[String], title: &str, command: &str, timeout: Duration) -> View {
    let mut rows = Vec::new();
    let mut json = serde_json::Map::new();
    for n in nodes {
        let answer = ask(n, command, timeout).unwrap_or_else(|e| format!("ERROR::{e}"));
        for item in answer.split(';').filter(|s| !s.is_empty()) {
            rows.push(vec![n.clone(), item.to_string()]);
        }
        json.insert(n.clone(), serde_json::json!(answer.split(';').filter(|s| !s.is_empty()).collect::<Vec<_>>()));
    }
    View {
        text: table(title, &["Node".to_string(), "Value".to_string()], &rows),
        json: serde_json::Value::Object(json),
    }
}

/// Runs `petrel-admin` with the process's arguments.
pub fn main() -> ExitCode {
    let args = Args::parse();
    let timeout = Duration::from_millis(args.timeout_ms.max(1));
    let seed = if args.host.contains(':') { args.host.clone() } else { format!("{}:{}", args.host, args.port) };
    let nodes = match discover(&seed, timeout) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("petrel-admin: {e}");
            return ExitCode::FAILURE;
        }
    };
    let words: Vec<&str> = args.execute.split_whitespace().collect();
    let view = match words.as_slice() {
        ["info"] | ["info", "network"] => info_view(&nodes, timeout),
        ["summary"] => summary_view(&nodes, timeout),
        ["show", "stat"] | ["show", "statistics"] => stat_view(&nodes, None, timeout),
        ["show", "stat" | "statistics", "like", x] => stat_view(&nodes, Some(x), timeout),
        ["show", "latencies"] | ["show", "latency"] => per_node_view(&nodes, "Latency", "latencies:", timeout),
        ["show", "config"] => per_node_view(&nodes, "Service Configuration", "get-config:context=service", timeout),
        _ => {
            eprintln!(
                "petrel-admin: unknown command {:?} (info, summary, show stat [like X], show latencies, show config)",
                args.execute
            );
            return ExitCode::from(2);
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&view.json).expect("JSON"));
    } else {
        print!("{}", view.text);
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_pad_columns_and_pairs_keep_order() {
        let t = table("T", &["a".into(), "bb".into()], &[vec!["xyz".into(), "1".into()]]);
        assert_eq!(t, "~~~ T ~~~\na    bb\nxyz  1\n");
        assert_eq!(pairs("x=1;y=;z"), vec![("x".to_string(), "1".to_string()), ("y".to_string(), String::new())]);
    }
}
