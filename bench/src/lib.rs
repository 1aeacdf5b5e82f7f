//! Petrel's operator tools: the info-protocol CLI ([`info_cli`], the `petrel-info` binary)
//! and the load generator (`petrel-bench`).

pub mod info_cli;
