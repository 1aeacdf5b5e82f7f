//! The S2-cell keys of a geospatial index: which cells a stored GeoJSON value is indexed under,
//! and which cells a query looks up.
//!
//! A point is indexed under its leaf cell; a region (polygon box, circle) under a covering of
//! at most [`CELLS_MAX`] cells between levels [`LEVEL_MIN`] and [`LEVEL_MAX`] (Aerospike's
//! defaults for `geo2dsphere` indexes), per polygon for up to [`BOXES_MAX`] polygons, past
//! that for the box around them all. Coverings always hold the whole region, so the
//! lookups below find a superset of the answer, and every candidate is then tested exactly
//! (`exp::geo_compare`):
//! * points within a query region: the region's covering, each cell looked up as the range
//!   of leaf ids it spans;
//! * regions containing a query point: the point's ancestors at every covering level, each
//!   looked up by equality (a covering cell holds the point exactly when it is one of them).
//!
//! Values outside longitude [-180, 180] or latitude [-90, 90] are not indexed: the sphere has
//! no place for them.

use s2::cap::Cap;
use s2::cellid::CellID;
use s2::latlng::LatLng;
use s2::point::Point;
use s2::rect::Rect;
use s2::region::RegionCoverer;
use s2::s1::{Angle, Rad};

use super::keys::{Key, Keys};
use crate::exp::{GeoExtent, EARTH_RADIUS_M};

/// Coarsest covering level (a level-1 cell spans about a twelfth of the earth).
pub const LEVEL_MIN: u8 = 1;
/// Finest covering level (a level-20 cell spans about 10 m).
pub const LEVEL_MAX: u8 = 20;
/// Most cells a region is covered by.
pub const CELLS_MAX: usize = 12;
/// Most polygon boxes of one value covered one by one; past this, the box around them all.
pub const BOXES_MAX: usize = 16;
/// Margin added around every region so values on its border stay inside the covering despite
/// rounding (about 1 cm).
const MARGIN_DEG: f64 = 1e-7;

/// One lookup into a geospatial index's keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CellLookup {
    /// Every key from `.0` to `.1`, both included (the leaves under a cell).
    Span(u64, u64),
    /// Exactly this cell.
    Exact(u64),
}

fn valid(lng: f64, lat: f64) -> bool {
    (-180.0..=180.0).contains(&lng) && (-90.0..=90.0).contains(&lat)
}

fn coverer() -> RegionCoverer {
    RegionCoverer { min_level: LEVEL_MIN, max_level: LEVEL_MAX, level_mod: 1, max_cells: CELLS_MAX }
}

fn leaf(lng: f64, lat: f64) -> CellID {
    CellID::from(LatLng::from_degrees(lat, lng))
}

/// The cells covering a region extent; empty for a point or an invalid extent.
fn covering(extent: &GeoExtent) -> Vec<u64> {
    let mut cells = Vec::new();
    match *extent {
        GeoExtent::Point { .. } => {}
        GeoExtent::Circle { lng, lat, radius_m } => {
            if valid(lng, lat) && radius_m >= 0.0 && radius_m.is_finite() {
                let center = Point::from(LatLng::from_degrees(lat, lng));
                let angle_rad = (radius_m / EARTH_RADIUS_M + MARGIN_DEG.to_radians()).min(std::f64::consts::PI);
                let cap = Cap::from_center_angle(&center, &Angle::from(Rad(angle_rad)));
                cells.extend(coverer().covering(&cap).0.iter().map(|c| c.0));
            }
        }
        GeoExtent::Boxes(ref boxes) => {
            let mut usable: Vec<[f64; 4]> =
                boxes.iter().copied().filter(|b| valid(b[0], b[1]) && valid(b[2], b[3])).collect();
            if usable.len() > BOXES_MAX {
                // Many polygons: the box around them all, so the covering work (and the keys
                // one value adds) stay bounded whatever a value or a query holds.
                let all = usable.iter().fold([180.0f64, 90.0, -180.0, -90.0], |[a, b, c, d], x| {
                    [a.min(x[0]), b.min(x[1]), c.max(x[2]), d.max(x[3])]
                });
                usable = vec![all];
            }
            for [lng_lo, lat_lo, lng_hi, lat_hi] in usable {
                let rect = Rect::from_degrees(
                    (lat_lo - MARGIN_DEG).max(-90.0),
                    (lng_lo - MARGIN_DEG).max(-180.0),
                    (lat_hi + MARGIN_DEG).min(90.0),
                    (lng_hi + MARGIN_DEG).min(180.0),
                );
                cells.extend(coverer().covering(&rect).0.iter().map(|c| c.0));
            }
        }
    }
    cells
}

/// Replaces the GeoJSON texts in `keys` by the cells they are indexed under, sorted and
/// without duplicates.
pub(crate) fn to_cells(keys: &mut Keys) {
    let mut cells: Vec<u64> = Vec::new();
    for k in keys.iter() {
        let Key::Bytes(text) = k else { continue };
        match crate::exp::geo_extent(text) {
            Some(GeoExtent::Point { lng, lat }) if valid(lng, lat) => cells.push(leaf(lng, lat).0),
            Some(extent) => cells.extend(covering(&extent)),
            None => {}
        }
    }
    cells.sort_unstable();
    cells.dedup();
    keys.clear();
    keys.extend(cells.into_iter().map(Key::Cell));
}

/// The lookups that find every stored value a query value can match: points within a query
/// region, regions containing a query point.
pub fn lookups(query: &[u8]) -> Vec<CellLookup> {
    match crate::exp::geo_extent(query) {
        Some(GeoExtent::Point { lng, lat }) if valid(lng, lat) => {
            let leaf = leaf(lng, lat);
            (LEVEL_MIN..=LEVEL_MAX).map(|level| CellLookup::Exact(leaf.parent(level as u64).0)).collect()
        }
        Some(extent) => covering(&extent)
            .into_iter()
            .map(|c| {
                let cell = CellID(c);
                CellLookup::Span(cell.range_min().0, cell.range_max().0)
            })
            .collect(),
        None => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn point(lng: f64, lat: f64) -> Vec<u8> {
        format!(r#"{{"type":"Point","coordinates":[{lng},{lat}]}}"#).into_bytes()
    }

    fn cells_of(json: &[u8]) -> Vec<u64> {
        let mut keys = Keys::new();
        keys.push(Key::Bytes(json.into()));
        to_cells(&mut keys);
        keys.iter().map(|k| if let Key::Cell(c) = k { *c } else { unreachable!() }).collect()
    }

    fn found(stored: &[u8], query: &[u8]) -> bool {
        let cells = cells_of(stored);
        lookups(query).iter().any(|l| match *l {
            CellLookup::Span(lo, hi) => cells.iter().any(|c| (lo..=hi).contains(c)),
            CellLookup::Exact(want) => cells.contains(&want),
        })
    }

    fn exact(stored: &[u8], query: &[u8]) -> bool {
        crate::exp::geo_compare(stored, query).unwrap_or(false)
    }

    #[test]
    fn a_point_is_one_leaf_and_a_region_a_bounded_covering() {
        assert_eq!(cells_of(&point(-122.0, 37.5)).len(), 1);
        let square = br#"{"type":"Polygon","coordinates":[[[-122.5,37.0],[-121.0,37.0],[-121.0,38.5],[-122.5,38.5],[-122.5,37.0]]]}"#;
        let n = cells_of(square).len();
        assert!((1..=CELLS_MAX).contains(&n), "{n} cells");
        assert!(cells_of(br#"{"type":"Point","coordinates":[200.0,10.0]}"#).is_empty());
        assert!(lookups(b"not json").is_empty());
    }

    proptest! {
        /// The index never misses: whenever the exact test says a point lies within a
        /// polygon or circle, the lookups of one find the cells of the other.
        #[test]
        fn lookups_find_every_exact_match(
            lng in -179.0f64..179.0, lat in -89.0f64..89.0,
            dx0 in -3.0f64..3.0, dy0 in -3.0f64..3.0, w in 0.0001f64..5.0, h in 0.0001f64..5.0,
            radius_m in 1.0f64..500_000.0,
        ) {
            let (x0, y0) = ((lng + dx0).clamp(-180.0, 180.0 - w), (lat + dy0).clamp(-90.0, 90.0 - h));
            let poly = format!(
                r#"{{"type":"Polygon","coordinates":[[[{x0},{y0}],[{},{y0}],[{},{}],[{x0},{}],[{x0},{y0}]]]}}"#,
                x0 + w, x0 + w, y0 + h, y0 + h
            ).into_bytes();
            let circle = format!(
                r#"{{"type":"AeroCircle","coordinates":[[{},{}],{radius_m}]}}"#,
                (lng + dx0 / 10.0).clamp(-180.0, 180.0), (lat + dy0 / 10.0).clamp(-90.0, 90.0)
            ).into_bytes();
            let p = point(lng, lat);
            for region in [&poly, &circle] {
                if exact(&p, region) {
                    prop_assert!(found(&p, region), "point within region missed");
                    prop_assert!(found(region, &p), "region containing point missed");
                }
            }
        }
    }

    #[test]
    fn a_value_of_many_polygons_is_covered_by_their_union_and_still_found() {
        let squares: Vec<String> = (0..1000)
            .map(|i| {
                let x = (i % 40) as f64;
                let y = (i / 40) as f64;
                format!("[[[{x},{y}],[{},{y}],[{},{}],[{x},{}],[{x},{y}]]]", x + 0.5, x + 0.5, y + 0.5, y + 0.5)
            })
            .collect();
        let many = format!(r#"{{"type":"MultiPolygon","coordinates":[{}]}}"#, squares.join(","));
        // One covering, not a thousand (denormalizing to the lowest level may split a cell).
        assert!(cells_of(many.as_bytes()).len() <= 4 * CELLS_MAX);
        assert!(lookups(many.as_bytes()).len() <= 4 * CELLS_MAX);
        let inside = point(39.25, 24.25);
        assert!(exact(&inside, many.as_bytes()));
        assert!(found(&inside, many.as_bytes()));
        assert!(found(many.as_bytes(), &inside));
    }

    #[test]
    fn points_on_a_border_and_at_a_pole_are_found() {
        let square = br#"{"type":"Polygon","coordinates":[[[0.0,0.0],[1.0,0.0],[1.0,1.0],[0.0,1.0],[0.0,0.0]]]}"#;
        for (lng, lat) in [(0.5, 0.0), (0.0, 0.5), (0.999_999_9, 0.5), (0.5, 0.999_999_9)] {
            if exact(&point(lng, lat), square) {
                assert!(found(&point(lng, lat), square), "({lng}, {lat})");
            }
        }
        let polar = br#"{"type":"AeroCircle","coordinates":[[0.0,90.0],100000.0]}"#;
        assert!(exact(&point(45.0, 89.5), polar));
        assert!(found(&point(45.0, 89.5), polar));
        assert!(found(polar, &point(45.0, 89.5)));
    }
}
