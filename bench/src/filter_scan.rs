//! petrel-bench's filter expressions (`--filter BIN<op>INT`, attached to every request so the
//! server checks it on each record) and its scan workload (`-w S`: each operation scans the
//! whole set and reads every record it returns). Together they measure what a filter costs
//! a batch read or a scan against the same run without it.

use petrel_client::{Bins, Client, Error, FilterExp, ScanPolicy};

/// Builds a comparison of two expressions.
type Comparison = fn(FilterExp, FilterExp) -> FilterExp;

/// Parses `BIN<op>INT` with `op` one of `>=`, `<=`, `==`, `!=`, `>`, `<`: the integer bin
/// compared with the number.
pub fn parse_filter(spec: &str) -> Result<FilterExp, String> {
    const OPS: [(&str, Comparison); 6] = [
        (">=", FilterExp::ge),
        ("<=", FilterExp::le),
        ("==", FilterExp::eq),
        ("!=", FilterExp::ne),
        (">", FilterExp::gt),
        ("<", FilterExp::lt),
    ];
    for (op, build) in OPS {
        if let Some((bin, value)) = spec.split_once(op) {
            let bin = bin.trim();
            if bin.is_empty() || bin.len() > 15 {
                return Err(format!("--filter {spec:?}: a bin name of 1 to 15 bytes is needed"));
            }
            let value: i64 =
                value.trim().parse().map_err(|_| format!("--filter {spec:?}: {value:?} is not an integer"))?;
            return Ok(build(FilterExp::int_bin(bin), FilterExp::int(value)));
        }
    }
    Err(format!("--filter {spec:?}: expected BIN<op>INT with op one of >=, <=, ==, !=, >, <"))
}

/// One scan of `namespace`/`set`, every record read: Ok(true) when it returned any.
pub async fn scan(client: &Client, policy: &ScanPolicy, namespace: &str, set: &str) -> Result<bool, Error> {
    let mut stream = client.scan(policy, namespace, set, Bins::All).await?;
    let mut found = false;
    while let Some(r) = stream.next().await {
        r?;
        found = true;
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_into_comparisons_of_an_integer_bin() {
        let ge = parse_filter("testbin>=0").expect("parses");
        assert_eq!(ge, FilterExp::ge(FilterExp::int_bin("testbin"), FilterExp::int(0)));
        assert_eq!(parse_filter("n < -5").expect("parses"), FilterExp::lt(FilterExp::int_bin("n"), FilterExp::int(-5)));
        assert!(parse_filter("n>=x").is_err());
        assert!(parse_filter(">=1").is_err());
        assert!(parse_filter("n~1").is_err());
    }
}
