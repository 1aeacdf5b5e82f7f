//! Filter expressions: a condition the server checks on each record before it answers or
//! writes it (Aerospike's expression language, in its packed wire form). A read or write of a
//! record that does not pass answers "filtered out"; batch rows and scan records that do not
//! pass are left out.
//!
//! ```
//! use petrel_client::FilterExp;
//! // age >= 18 and name != "test"
//! let adults = FilterExp::and(&[
//!     FilterExp::ge(FilterExp::int_bin("age"), FilterExp::int(18)),
//!     FilterExp::ne(FilterExp::string_bin("name"), FilterExp::string("test")),
//! ]);
//! assert!(!adults.as_bytes().is_empty());
//! ```

use petrel_proto::exp as op;
use petrel_proto::msgpack::{self, MsgValue};

/// A packed filter expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterExp(Vec<u8>);

impl FilterExp {
    /// An expression already packed (as another client or tool produced it).
    pub fn from_packed(bytes: Vec<u8>) -> FilterExp {
        FilterExp(bytes)
    }

    /// The packed form sent in the request's filter field.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn int(v: i64) -> FilterExp {
        FilterExp(msgpack::to_vec(&MsgValue::Int(v)))
    }

    pub fn string(s: &str) -> FilterExp {
        FilterExp(msgpack::to_vec(&MsgValue::str(s)))
    }

    /// The integer value of bin `name` (unknown when the bin is missing or not an integer).
    pub fn int_bin(name: &str) -> FilterExp {
        Self::bin(op::ty::INT, name)
    }

    /// The string value of bin `name`.
    pub fn string_bin(name: &str) -> FilterExp {
        Self::bin(op::ty::STRING, name)
    }

    fn bin(ty: i64, name: &str) -> FilterExp {
        // The bin name is a plain msgpack string, not a particle.
        let mut packed_name = Vec::with_capacity(name.len() + 2);
        msgpack::encode_str_header(name.len(), &mut packed_name);
        packed_name.extend_from_slice(name.as_bytes());
        FilterExp(op::pack_call(op::BIN, &[msgpack::to_vec(&MsgValue::Int(ty)), packed_name]))
    }

    pub fn eq(a: FilterExp, b: FilterExp) -> FilterExp {
        Self::call(op::EQ, &[a, b])
    }

    pub fn ne(a: FilterExp, b: FilterExp) -> FilterExp {
        Self::call(op::NE, &[a, b])
    }

    pub fn gt(a: FilterExp, b: FilterExp) -> FilterExp {
        Self::call(op::GT, &[a, b])
    }

    pub fn ge(a: FilterExp, b: FilterExp) -> FilterExp {
        Self::call(op::GE, &[a, b])
    }

    pub fn lt(a: FilterExp, b: FilterExp) -> FilterExp {
        Self::call(op::LT, &[a, b])
    }

    pub fn le(a: FilterExp, b: FilterExp) -> FilterExp {
        Self::call(op::LE, &[a, b])
    }

    pub fn and(all: &[FilterExp]) -> FilterExp {
        Self::call(op::AND, all)
    }

    pub fn or(any: &[FilterExp]) -> FilterExp {
        Self::call(op::OR, any)
    }

    fn call(code: i64, args: &[FilterExp]) -> FilterExp {
        let args: Vec<Vec<u8>> = args.iter().map(|a| a.0.clone()).collect();
        FilterExp(op::pack_call(code, &args))
    }
}

/// `!exp`: true where `exp` is false.
impl std::ops::Not for FilterExp {
    type Output = FilterExp;

    fn not(self) -> FilterExp {
        FilterExp::call(op::NOT, &[self])
    }
}
