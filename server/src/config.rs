//! petreld's configuration: built-in defaults, then a TOML file, then `PETREL_…` environment
//! variables, then command-line flags, each layer overriding the one before.
//!
//! Every key has an environment twin: nested keys are joined with `__`, e.g.
//! `PETREL_SERVICE__LISTEN=0.0.0.0:3000` or `PETREL_NAMESPACE__TEST__DEFAULT_TTL=60`.
//! Unknown keys and invalid values stop start-up with a message naming the setting.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use petrel_storage::NamespaceConfig;
use serde::{Deserialize, Serialize};

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub service: ServiceConfig,
    /// Namespaces by name.
    pub namespace: BTreeMap<String, NamespaceSettings>,
}

/// The service port and the node's identity.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceConfig {
    /// Address of the client service port.
    pub listen: SocketAddr,
    /// Node id as hex; derived from the listen address and a random salt when empty.
    pub node_id: String,
    /// Cluster name clients may check; empty = none.
    pub cluster_name: String,
    /// Directory for persistent data (the flash store; unused by memory namespaces).
    pub data_dir: PathBuf,
    /// Most client connections at once; further ones are refused.
    pub proto_fd_max: u32,
    /// Close a client connection idle this long; 0 = never.
    pub proto_fd_idle_ms: u64,
    /// Largest request frame body accepted.
    pub frame_size_max: u64,
    /// Most keys in one batch request.
    pub batch_max_requests: u32,
    /// Threads serving client connections; 0 = one per CPU.
    pub service_threads: usize,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 3000)),
            node_id: String::new(),
            cluster_name: String::new(),
            data_dir: PathBuf::from("data"),
            proto_fd_max: 15_000,
            proto_fd_idle_ms: 600_000,
            frame_size_max: 32 << 20,
            batch_max_requests: 5_000,
            service_threads: 0,
        }
    }
}

/// A namespace's settings, as written in the file (names as in Aerospike, with `_`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NamespaceSettings {
    pub replication_factor: u8,
    pub default_ttl: u32,
    pub memory_size: u64,
    pub evict_used_pct: u8,
    pub stop_writes_used_pct: u8,
    pub max_record_size: usize,
    pub partition_tree_sprigs: usize,
    pub nsup_period: u32,
}

impl Default for NamespaceSettings {
    fn default() -> Self {
        let d = NamespaceConfig::new("default");
        NamespaceSettings {
            replication_factor: d.replication_factor,
            default_ttl: d.default_ttl_secs,
            memory_size: d.memory_size_bytes,
            evict_used_pct: d.evict_used_pct,
            stop_writes_used_pct: d.stop_writes_used_pct,
            max_record_size: d.max_record_size_bytes,
            partition_tree_sprigs: d.sprigs_per_partition,
            nsup_period: d.nsup_period_secs,
        }
    }
}

impl NamespaceSettings {
    pub fn to_storage(&self, name: &str) -> NamespaceConfig {
        NamespaceConfig {
            name: name.to_string(),
            replication_factor: self.replication_factor,
            default_ttl_secs: self.default_ttl,
            memory_size_bytes: self.memory_size,
            evict_used_pct: self.evict_used_pct,
            stop_writes_used_pct: self.stop_writes_used_pct,
            max_record_size_bytes: self.max_record_size,
            sprigs_per_partition: self.partition_tree_sprigs,
            nsup_period_secs: self.nsup_period,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        let mut namespace = BTreeMap::new();
        namespace.insert("test".to_string(), NamespaceSettings::default());
        Config { service: ServiceConfig::default(), namespace }
    }
}

/// Command-line overrides.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub namespaces: Vec<String>,
    pub data_dir: Option<PathBuf>,
    pub node_id: Option<String>,
}

impl Config {
    /// Loads defaults, `file` (if any), the environment, then `overrides`, and validates.
    pub fn load(file: Option<&std::path::Path>, overrides: &Overrides) -> Result<Config, String> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(format!("config file {} does not exist", path.display()));
            }
            let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            // A file that names namespaces replaces the default set of namespaces.
            if text.contains("[namespace") {
                figment =
                    Figment::from(Serialized::defaults(Config { namespace: BTreeMap::new(), ..Config::default() }));
            }
            figment = figment.merge(Toml::file(path));
        }
        // Only PETREL_SERVICE__… and PETREL_NAMESPACE__… are settings; other PETREL_ variables
        // belong to tools and tests.
        let env = Env::prefixed("PETREL_")
            .filter(|k| {
                let k = k.as_str().to_ascii_lowercase();
                k.starts_with("service__") || k.starts_with("namespace__")
            })
            .split("__");
        figment = figment.merge(env);
        let mut config: Config = figment.extract().map_err(|e| describe(&e))?;
        if let Some(listen) = overrides.listen {
            config.service.listen = listen;
        }
        if let Some(dir) = &overrides.data_dir {
            config.service.data_dir = dir.clone();
        }
        if let Some(id) = &overrides.node_id {
            config.service.node_id = id.clone();
        }
        if !overrides.namespaces.is_empty() {
            let mut chosen = BTreeMap::new();
            for name in &overrides.namespaces {
                chosen.insert(name.clone(), config.namespace.get(name).cloned().unwrap_or_default());
            }
            config.namespace = chosen;
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks every setting, naming the first wrong one.
    pub fn validate(&self) -> Result<(), String> {
        if self.namespace.is_empty() {
            return Err("namespace: at least one namespace is required".into());
        }
        if self.namespace.len() > 32 {
            return Err("namespace: at most 32 namespaces".into());
        }
        for (name, ns) in &self.namespace {
            ns.to_storage(name).validate().map_err(|e| format!("namespace.{name}: {e}"))?;
        }
        if !self.service.node_id.is_empty() {
            parse_node_id(&self.service.node_id).map_err(|e| format!("service.node_id: {e}"))?;
        }
        if self.service.proto_fd_max == 0 {
            return Err("service.proto_fd_max: must be at least 1".into());
        }
        if self.service.frame_size_max < 1024 || self.service.frame_size_max > petrel_proto::wire::PROTO_SIZE_MAX {
            return Err("service.frame_size_max: must be 1 KiB to 128 MiB".into());
        }
        if self.service.service_threads > 256 {
            return Err("service.service_threads: at most 256".into());
        }
        if self.service.batch_max_requests == 0 {
            return Err("service.batch_max_requests: must be at least 1".into());
        }
        if self.service.cluster_name.contains(['\t', '\n', ';', ':']) {
            return Err("service.cluster_name: must not contain tabs, newlines, ';' or ':'".into());
        }
        Ok(())
    }
}

/// Parses a node id: 1 to 16 hex digits, not zero.
pub fn parse_node_id(s: &str) -> Result<u64, String> {
    let id = u64::from_str_radix(s, 16).map_err(|_| format!("{s:?} is not 1 to 16 hex digits"))?;
    if id == 0 {
        return Err("node id must not be 0".into());
    }
    Ok(id)
}

fn describe(e: &figment::Error) -> String {
    let mut parts = Vec::new();
    for err in e.clone() {
        let path = err.path.join(".");
        let origin = err.metadata.as_ref().map(|m| m.name.to_string()).unwrap_or_default();
        parts.push(if path.is_empty() {
            format!("{} ({origin})", err.kind)
        } else {
            format!("{path}: {} ({origin})", err.kind)
        });
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_hold_one_test_namespace_on_loopback() {
        let c = Config::load(None, &Overrides::default()).expect("defaults load");
        assert_eq!(c.service.listen.to_string(), "127.0.0.1:3000");
        assert_eq!(c.namespace.keys().collect::<Vec<_>>(), vec!["test"]);
    }

    #[test]
    fn file_unknown_keys_and_bad_values_are_named() {
        let dir = std::env::temp_dir().join(format!("petrel-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("bad.toml");
        std::fs::write(&file, "[service]\nlisten = \"127.0.0.1:4000\"\nbogus = 1\n").expect("write");
        let err = Config::load(Some(&file), &Overrides::default()).unwrap_err();
        assert!(err.contains("bogus"), "{err}");
        std::fs::write(&file, "[namespace.bar]\npartition_tree_sprigs = 3\n").expect("write");
        let err = Config::load(Some(&file), &Overrides::default()).unwrap_err();
        assert!(err.contains("namespace.bar") && err.contains("sprigs"), "{err}");
        std::fs::write(&file, "[namespace.bar]\ndefault_ttl = 60\n[namespace.baz]\n").expect("write");
        let c = Config::load(Some(&file), &Overrides::default()).expect("loads");
        assert_eq!(c.namespace.keys().collect::<Vec<_>>(), vec!["bar", "baz"]);
        assert_eq!(c.namespace["bar"].default_ttl, 60);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn flags_override() {
        let o =
            Overrides { namespaces: vec!["a".into(), "b".into()], node_id: Some("zz".into()), ..Default::default() };
        let err = Config::load(None, &o).unwrap_err();
        assert!(err.contains("service.node_id"), "{err}");
        let o = Overrides { namespaces: vec!["a".into()], node_id: Some("A1".into()), ..Default::default() };
        let c = Config::load(None, &o).expect("loads");
        assert_eq!(c.namespace.keys().collect::<Vec<_>>(), vec!["a"]);
    }
}

#[cfg(test)]
mod env_tests {
    use super::*;

    #[test]
    fn environment_overrides_nested_keys() {
        // Only this test sets these variables.
        std::env::set_var("PETREL_NAMESPACE__TEST__MAX_RECORD_SIZE", "4096");
        std::env::set_var("PETREL_SERVICE__PROTO_FD_MAX", "77");
        std::env::set_var("PETREL_UNRELATED_TOOL_SETTING", "x");
        let c = Config::load(None, &Overrides::default());
        std::env::remove_var("PETREL_NAMESPACE__TEST__MAX_RECORD_SIZE");
        std::env::remove_var("PETREL_SERVICE__PROTO_FD_MAX");
        std::env::remove_var("PETREL_UNRELATED_TOOL_SETTING");
        let c = c.expect("loads");
        assert_eq!(c.service.proto_fd_max, 77);
        assert_eq!(c.namespace["test"].max_record_size, 4096);
    }
}
