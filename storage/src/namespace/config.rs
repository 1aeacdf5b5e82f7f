//! A namespace's settings: [`NamespaceConfig`], its defaults and validation, and the dynamic
//! changes a running namespace accepts ([`Namespace::set_config`]).

use crate::engine::{StorageEngine, IMAGE_SIZE_MAX};
use crate::namespace::Namespace;

/// A namespace's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct NamespaceConfig {
    pub name: String,
    /// Copies of each partition the cluster keeps.
    pub replication_factor: u8,
    /// TTL of writes that ask for the namespace default; 0 = never expire.
    pub default_ttl_secs: u32,
    /// Memory the namespace may use for index and data.
    pub memory_size_bytes: u64,
    /// Above this share of `memory_size_bytes` the supervisor evicts the records nearest to
    /// expiry; 0 disables eviction.
    pub evict_used_pct: u8,
    /// At or above this share of `memory_size_bytes` client writes fail with OUT_OF_SPACE.
    pub stop_writes_used_pct: u8,
    /// Largest record image, overhead included.
    pub max_record_size_bytes: usize,
    /// Sprigs per partition, a power of two.
    pub sprigs_per_partition: usize,
    /// Seconds between supervisor passes (expiry, truncation, eviction).
    pub nsup_period_secs: u32,
    /// Delete marks kept at most (0: none), fixed at start: see `marks`.
    pub delete_marks_max: u64,
    /// Seconds a delete mark is kept: longer than any split or outage whose copies should
    /// not bring a deleted record back.
    pub tomb_raider_eligible_age_secs: u32,
}

impl NamespaceConfig {
    /// The defaults for a namespace called `name`.
    pub fn new(name: impl Into<String>) -> Self {
        NamespaceConfig {
            name: name.into(),
            replication_factor: 2,
            default_ttl_secs: 0,
            memory_size_bytes: 4 << 30,
            evict_used_pct: 60,
            stop_writes_used_pct: 90,
            max_record_size_bytes: 1 << 20,
            sprigs_per_partition: 8,
            nsup_period_secs: 1,
            delete_marks_max: 1 << 20,
            tomb_raider_eligible_age_secs: 86_400,
        }
    }

    /// Checks the settings, naming the first one that is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.name.is_empty() || self.name.len() > petrel_proto::wire::NAMESPACE_NAME_LEN_MAX {
            return Err(format!("namespace name {:?} must be 1 to 31 bytes", self.name));
        }
        if self.replication_factor == 0 {
            return Err("replication-factor must be at least 1".into());
        }
        if self.default_ttl_secs > petrel_proto::wire::TTL_SECS_MAX {
            return Err("default-ttl must be at most 10 years".into());
        }
        if self.evict_used_pct > 100 || self.stop_writes_used_pct == 0 || self.stop_writes_used_pct > 100 {
            return Err("evict-used-pct must be 0..=100 and stop-writes-used-pct 1..=100".into());
        }
        if self.max_record_size_bytes < 64 || self.max_record_size_bytes > IMAGE_SIZE_MAX {
            return Err(format!("max-record-size must be 64 bytes to {IMAGE_SIZE_MAX} bytes"));
        }
        if !self.sprigs_per_partition.is_power_of_two()
            || self.sprigs_per_partition > crate::index::SPRIGS_PER_PARTITION_MAX
        {
            return Err("partition-tree-sprigs must be a power of two up to 65536".into());
        }
        if self.nsup_period_secs == 0 {
            return Err("nsup-period must be at least 1 second".into());
        }
        // 65 536 per partition at most: what one migration batch carries.
        if self.delete_marks_max > 1 << 28 {
            return Err("delete-marks-max must be at most 268435456".into());
        }
        Ok(())
    }
}

impl<E: StorageEngine> Namespace<E> {
    /// A copy of the current settings.
    pub fn config(&self) -> NamespaceConfig {
        self.config.read().clone()
    }

    /// Changes a dynamic setting (names as in the configuration file, `-` or `_`); the whole
    /// configuration is validated again before the change takes effect.
    pub fn set_config(&self, key: &str, value: &str) -> Result<(), String> {
        let mut next = self.config();
        let parse_err = |_| format!("{key}: {value:?} is not a valid number");
        match key.replace('-', "_").as_str() {
            "default_ttl" => next.default_ttl_secs = value.parse().map_err(parse_err)?,
            "evict_used_pct" => next.evict_used_pct = value.parse().map_err(parse_err)?,
            "stop_writes_used_pct" => next.stop_writes_used_pct = value.parse().map_err(parse_err)?,
            "max_record_size" => next.max_record_size_bytes = value.parse().map_err(parse_err)?,
            "memory_size" => next.memory_size_bytes = value.parse().map_err(parse_err)?,
            "nsup_period" => next.nsup_period_secs = value.parse().map_err(parse_err)?,
            _ => return Err(format!("{key} is not a dynamic namespace setting")),
        }
        next.validate()?;
        *self.config.write() = next;
        Ok(())
    }
}
