//! Geospatial comparison in expressions: whether a GeoJSON point lies within a region (a
//! `Polygon`, `MultiPolygon` or Aerospike's `AeroCircle`), or a region contains a point.
//! Points are `[longitude, latitude]` in degrees; polygon membership is decided on the plane
//! of longitude and latitude (ray casting, holes excluded), circles by great-circle distance.
//! Region against region is not compared (false).

use serde_json::Value;

/// Mean earth radius, metres.
pub const EARTH_RADIUS_M: f64 = 6_371_000.0;

type Ring = Vec<(f64, f64)>;

enum Shape {
    Point(f64, f64),
    Circle(f64, f64, f64),
    /// Polygons, each an outer ring and holes.
    Polygons(Vec<Vec<Ring>>),
}

/// The JSON text of a GeoJSON value: a literal carries the bare text, a stored bin the
/// particle's header and cells first.
fn text(bytes: &[u8]) -> Option<&[u8]> {
    if bytes.first() == Some(&b'{') {
        Some(bytes)
    } else {
        petrel_proto::particle::geojson_text(bytes).ok()
    }
}

fn pair(v: &Value) -> Option<(f64, f64)> {
    match v.as_array()?.as_slice() {
        [x, y, ..] => Some((x.as_f64()?, y.as_f64()?)),
        _ => None,
    }
}

fn rings(v: &Value) -> Option<Vec<Ring>> {
    v.as_array()?.iter().map(|r| r.as_array()?.iter().map(pair).collect()).collect()
}

fn parse(bytes: &[u8]) -> Option<Shape> {
    let v: Value = serde_json::from_slice(text(bytes)?).ok()?;
    let coords = v.get("coordinates")?;
    Some(match v.get("type")?.as_str()? {
        "Point" => {
            let (x, y) = pair(coords)?;
            Shape::Point(x, y)
        }
        "AeroCircle" => {
            let parts = coords.as_array()?;
            let (x, y) = pair(parts.first()?)?;
            Shape::Circle(x, y, parts.get(1)?.as_f64()?)
        }
        "Polygon" => Shape::Polygons(vec![rings(coords)?]),
        "MultiPolygon" => Shape::Polygons(coords.as_array()?.iter().map(rings).collect::<Option<_>>()?),
        _ => return None,
    })
}

/// Ray casting: whether (x, y) is inside the ring.
fn in_ring(ring: &[(f64, f64)], x: f64, y: f64) -> bool {
    let mut inside = false;
    let n = ring.len();
    for i in 0..n {
        let (xi, yi) = ring[i];
        let (xj, yj) = ring[(i + n - 1) % n];
        if (yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi {
            inside = !inside;
        }
    }
    inside
}

fn distance_m(lng1: f64, lat1: f64, lng2: f64, lat2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = p2 - p1;
    let dl = (lng2 - lng1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_M * a.sqrt().min(1.0).asin()
}

fn point_in(x: f64, y: f64, region: &Shape) -> bool {
    match region {
        Shape::Point(..) => false,
        Shape::Circle(cx, cy, r) => distance_m(x, y, *cx, *cy) <= *r,
        Shape::Polygons(polys) => polys.iter().any(|rings| {
            rings.first().is_some_and(|outer| in_ring(outer, x, y)) && !rings[1..].iter().any(|h| in_ring(h, x, y))
        }),
    }
}

/// Whether `left` is within `right` or contains it (one a point, the other a region);
/// `None` when either is not GeoJSON this understands.
pub(crate) fn compare(left: &[u8], right: &[u8]) -> Option<bool> {
    Some(match (parse(left)?, parse(right)?) {
        (Shape::Point(x, y), region) | (region, Shape::Point(x, y)) => point_in(x, y, &region),
        _ => false,
    })
}

/// What a GeoJSON value spans, for the cell index: a point, a circle, or for each polygon the
/// longitude/latitude box of its outer ring (the box holds every point the ray-casting test
/// can place inside the polygon).
#[derive(Debug, Clone, PartialEq)]
pub enum Extent {
    Point {
        lng: f64,
        lat: f64,
    },
    Circle {
        lng: f64,
        lat: f64,
        radius_m: f64,
    },
    /// `[lng_lo, lat_lo, lng_hi, lat_hi]` per polygon.
    Boxes(Vec<[f64; 4]>),
}

/// The extent of a GeoJSON value (bare text or a stored particle); `None` when it is not
/// GeoJSON this understands.
pub fn extent(bytes: &[u8]) -> Option<Extent> {
    Some(match parse(bytes)? {
        Shape::Point(lng, lat) => Extent::Point { lng, lat },
        Shape::Circle(lng, lat, radius_m) => Extent::Circle { lng, lat, radius_m },
        Shape::Polygons(polys) => Extent::Boxes(
            polys
                .iter()
                .filter_map(|rings| {
                    let outer = rings.first()?;
                    let (x0, y0) = *outer.first()?;
                    Some(
                        outer
                            .iter()
                            .fold([x0, y0, x0, y0], |[a, b, c, d], &(x, y)| [a.min(x), b.min(y), c.max(x), d.max(y)]),
                    )
                })
                .collect(),
        ),
    })
}
