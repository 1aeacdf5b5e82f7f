//! Petrel's operator tools: the info-protocol CLI ([`info_cli`], the `petrel-info` binary), the
//! cluster view ([`admin_cli`], the `petrel-admin` binary)
//! and the load generator ([`load`], the `petrel-bench` binary, with asbench's flags; with
//! `--redis` it drives a Redis server through [`redis`] for side-by-side figures; its
//! secondary-index query workload is [`query_load`], its filter expressions and scan
//! workload [`filter_scan`]).

pub mod admin_cli;
pub mod filter_scan;
pub mod info_cli;
pub mod load;
pub mod query_load;
pub mod redis;
