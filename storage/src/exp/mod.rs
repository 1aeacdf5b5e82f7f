//! Filter expressions: the language the clients send in a FILTER field (43) and in expression
//! read and modify operations (op types 7 and 8), compiled once per request ([`Program`]) and
//! evaluated per record ([`RecordCtx`]) under the record's lock.
//!
//! * `decode` — bytes to a bounded tree of nodes; `check` — its static type check;
//! * `eval` — the record context, logic, comparisons, metadata, `cond`, `let`;
//! * `arith` — arithmetic and integer operators; `call` — CDT, bit and HLL calls;
//! * `geo` — geospatial comparison (point within region, region contains point);
//! * `value` — the values ([`EVal`]) and their conversions.

mod arith;
mod call;
mod check;
mod decode;
mod eval;
mod geo;
mod value;

#[cfg(test)]
mod tests;

pub use decode::{Program, DEPTH_MAX, NODES_MAX};
pub use eval::{Bins, RecordCtx};
pub use geo::{extent as geo_extent, Extent as GeoExtent, EARTH_RADIUS_M};
pub use value::EVal;

/// Whether one GeoJSON value (bare JSON text or a stored particle) lies within the other or
/// contains it; `None` when either is not GeoJSON that is understood. Secondary-index geo
/// queries share the expressions' geometry.
pub fn geo_compare(left: &[u8], right: &[u8]) -> Option<bool> {
    geo::compare(left, right)
}
