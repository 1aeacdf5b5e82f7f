//! Compiling an expression: the msgpack bytes of a FILTER field or of an expression operation
//! decoded once into a tree of [`Node`]s, with every count, the nesting depth and the node
//! total bounded, literal lists and maps normalised, variables resolved to slots, regexes
//! compiled and call arguments that are all literals packed once. Anything malformed, too
//! deep or too large is a parameter error.

use petrel_proto::exp as op;
use petrel_proto::msgpack::{self, MsgValue};

use super::check;
use super::value::EVal;
use crate::StorageError;

/// Deepest nesting of expression calls.
pub const DEPTH_MAX: usize = 64;
/// Most nodes one expression may compile to.
pub const NODES_MAX: usize = 16 * 1024;
/// Most variables one expression may define.
pub const VARS_MAX: usize = 256;
/// Bytes a compiled regex may take.
const REGEX_SIZE_MAX: usize = 1 << 20;
/// Most regular expressions in one expression: with [`REGEX_SIZE_MAX`] each for the program
/// and for its matcher's cache, at most 32 MiB per request.
const REGEXES_MAX: usize = 16;

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

/// A compiled call into the CDT, bit or HLL code.
#[derive(Debug)]
pub struct Call {
    /// The declared result type ([`op::ty`]).
    pub ret: i64,
    /// [`op::MODULE_CDT`], [`op::MODULE_BITS`] or [`op::MODULE_HLL`].
    pub module: i64,
    /// The call returns the modified bin rather than the op's result.
    pub modify: bool,
    /// The context list's msgpack bytes, when the call reaches into a nested collection.
    pub ctx: Option<Vec<u8>>,
    pub code: i64,
    pub args: Vec<Node>,
    /// The payload, packed at compile time when every argument is a literal.
    pub packed: Option<Vec<u8>>,
    /// The bin (or value) the call works on.
    pub bin: Box<Node>,
}

/// A compiled expression node.
#[derive(Debug)]
pub enum Node {
    Lit(EVal<'static>),
    Unknown,
    Cmp(Cmp, Box<Node>, Box<Node>),
    Regex(Box<regex::bytes::Regex>, Box<Node>),
    /// Geospatial comparison: a point within a region, or a region containing a point.
    Geo(Box<Node>, Box<Node>),
    And(Vec<Node>),
    Or(Vec<Node>),
    Not(Box<Node>),
    Exclusive(Vec<Node>),
    /// An arithmetic or integer operator (its op code) and its operands.
    Arith(i64, Vec<Node>),
    DigestModulo(i64),
    /// A metadata read without arguments (its op code).
    Meta(i64),
    Key(i64),
    Bin(i64, Vec<u8>),
    BinType(Vec<u8>),
    Cond(Vec<Node>),
    /// Definitions (slot, value) evaluated in order, then the scope.
    Let(Vec<(usize, Node)>, Box<Node>),
    Var(usize),
    Call(Box<Call>),
}

/// A compiled expression.
#[derive(Debug)]
pub struct Program {
    pub(crate) root: Node,
    /// Variable slots the program needs.
    pub(crate) vars: usize,
    /// Whether the program reads the record's set name.
    pub(crate) needs_set_name: bool,
}

impl Program {
    /// Compiles the msgpack bytes of a filter: an expression that must be a boolean.
    pub fn compile(bytes: &[u8]) -> Result<Program, StorageError> {
        let (program, used, t) = Program::compile_typed(bytes)?;
        if used != bytes.len() {
            return Err(bad("trailing bytes after expression"));
        }
        if t != check::ANY && t != op::ty::BOOL {
            return Err(bad("filter expression is not a boolean"));
        }
        Ok(program)
    }

    /// Compiles the expression at the front of `bytes`; the program and the bytes it took.
    pub fn compile_prefix(bytes: &[u8]) -> Result<(Program, usize), StorageError> {
        Program::compile_typed(bytes).map(|(program, used, _)| (program, used))
    }

    /// Compiles and type-checks the expression at the front of `bytes`; the program, the
    /// bytes it took and its type.
    fn compile_typed(bytes: &[u8]) -> Result<(Program, usize, i64), StorageError> {
        let mut c =
            Compiler { buf: bytes, pos: 0, nodes: 0, regexes: 0, scopes: Vec::new(), vars: 0, needs_set_name: false };
        let root = c.node(0)?;
        let t = check::type_of(&root, &mut Vec::new())?;
        Ok((Program { root, vars: c.vars, needs_set_name: c.needs_set_name }, c.pos, t))
    }

    /// Whether the program reads the record's set name.
    pub fn needs_set_name(&self) -> bool {
        self.needs_set_name
    }
}

fn bad(m: &'static str) -> StorageError {
    StorageError::Parameter(m)
}

struct Compiler<'b> {
    buf: &'b [u8],
    pos: usize,
    nodes: usize,
    /// Regular expressions compiled so far.
    regexes: usize,
    /// Names in scope, innermost last, with their slots.
    scopes: Vec<(&'b [u8], usize)>,
    vars: usize,
    needs_set_name: bool,
}

impl<'b> Compiler<'b> {
    fn peek(&self) -> Result<u8, StorageError> {
        self.buf.get(self.pos).copied().ok_or(bad("expression ends early"))
    }

    fn take(&mut self, n: usize) -> Result<&'b [u8], StorageError> {
        let end = self.pos.checked_add(n).ok_or(bad("expression ends early"))?;
        let s = self.buf.get(self.pos..end).ok_or(bad("expression ends early"))?;
        self.pos = end;
        Ok(s)
    }

    fn be(&mut self, n: usize) -> Result<u64, StorageError> {
        Ok(self.take(n)?.iter().fold(0u64, |acc, &b| (acc << 8) | b as u64))
    }

    /// An array header, if one is next: its element count, bounded by the bytes left.
    fn array_header(&mut self) -> Result<Option<usize>, StorageError> {
        let n = match self.peek()? {
            b @ 0x90..=0x9f => {
                self.pos += 1;
                (b & 0x0f) as usize
            }
            0xdc => {
                self.pos += 1;
                self.be(2)? as usize
            }
            0xdd => {
                self.pos += 1;
                self.be(4)? as usize
            }
            _ => return Ok(None),
        };
        if n > self.buf.len() - self.pos {
            return Err(bad("expression count exceeds its bytes"));
        }
        Ok(Some(n))
    }

    /// A msgpack value, decoded, and its bytes.
    fn value(&mut self) -> Result<(MsgValue, &'b [u8]), StorageError> {
        let (v, used) = msgpack::decode_prefix(&self.buf[self.pos..]).map_err(|_| bad("malformed expression value"))?;
        let raw = self.take(used)?;
        Ok((v, raw))
    }

    fn int(&mut self) -> Result<i64, StorageError> {
        match self.value()?.0 {
            MsgValue::Int(i) => Ok(i),
            MsgValue::UInt(u) => Ok(u as i64),
            _ => Err(bad("expression wants an integer")),
        }
    }

    /// A raw string (bin, variable and regex text carry no particle-type prefix).
    fn raw_str(&mut self) -> Result<&'b [u8], StorageError> {
        let n = match self.peek()? {
            b @ 0xa0..=0xbf => {
                self.pos += 1;
                (b & 0x1f) as usize
            }
            0xd9 | 0xc4 => {
                self.pos += 1;
                self.be(1)? as usize
            }
            0xda | 0xc5 => {
                self.pos += 1;
                self.be(2)? as usize
            }
            0xdb | 0xc6 => {
                self.pos += 1;
                self.be(4)? as usize
            }
            _ => return Err(bad("expression wants a string")),
        };
        self.take(n)
    }

    fn count_node(&mut self) -> Result<(), StorageError> {
        self.nodes += 1;
        if self.nodes > NODES_MAX {
            return Err(bad("expression has too many nodes"));
        }
        Ok(())
    }

    fn node(&mut self, depth: usize) -> Result<Node, StorageError> {
        if depth > DEPTH_MAX {
            return Err(bad("expression nested too deep"));
        }
        self.count_node()?;
        let Some(n) = self.array_header()? else {
            return self.literal();
        };
        if n == 0 {
            return Err(bad("empty expression call"));
        }
        let code = self.int()?;
        let argc = n - 1;
        let d = depth + 1;
        let want = |k: usize| if argc == k { Ok(()) } else { Err(bad("wrong argument count in expression")) };
        Ok(match code {
            op::UNKNOWN => {
                want(0)?;
                Node::Unknown
            }
            op::EQ..=op::LE => {
                want(2)?;
                let cmp = [Cmp::Eq, Cmp::Ne, Cmp::Gt, Cmp::Ge, Cmp::Lt, Cmp::Le][(code - op::EQ) as usize];
                Node::Cmp(cmp, Box::new(self.node(d)?), Box::new(self.node(d)?))
            }
            op::REGEX => {
                want(3)?;
                let flags = self.int()?;
                // Each compiled regex may take REGEX_SIZE_MAX (and as much again for its
                // matcher's cache): their number is bounded too.
                self.regexes += 1;
                if self.regexes > REGEXES_MAX {
                    return Err(bad("too many regular expressions"));
                }
                let text = std::str::from_utf8(self.raw_str()?).map_err(|_| bad("regex is not UTF-8"))?;
                let re = regex::bytes::RegexBuilder::new(text)
                    .case_insensitive(flags & op::regex_flags::ICASE != 0)
                    .multi_line(flags & op::regex_flags::NEWLINE != 0)
                    .dot_matches_new_line(flags & op::regex_flags::NEWLINE == 0)
                    .size_limit(REGEX_SIZE_MAX)
                    .dfa_size_limit(REGEX_SIZE_MAX)
                    .build()
                    .map_err(|_| bad("bad regex"))?;
                Node::Regex(Box::new(re), Box::new(self.node(d)?))
            }
            op::GEO => {
                want(2)?;
                Node::Geo(Box::new(self.node(d)?), Box::new(self.node(d)?))
            }
            op::AND | op::OR | op::EXCLUSIVE => {
                if argc < 2 {
                    return Err(bad("logical operator needs two operands"));
                }
                let args = self.nodes_n(argc, d)?;
                match code {
                    op::AND => Node::And(args),
                    op::OR => Node::Or(args),
                    _ => Node::Exclusive(args),
                }
            }
            op::NOT => {
                want(1)?;
                Node::Not(Box::new(self.node(d)?))
            }
            op::ADD..=op::INT_RSCAN | op::MIN | op::MAX => {
                let (lo, hi) = arity(code);
                if argc < lo || argc > hi {
                    return Err(bad("wrong operand count for arithmetic"));
                }
                Node::Arith(code, self.nodes_n(argc, d)?)
            }
            op::DIGEST_MODULO => {
                want(1)?;
                let m = self.int()?;
                if m <= 0 {
                    return Err(bad("digest modulus must be positive"));
                }
                Node::DigestModulo(m)
            }
            op::DEVICE_SIZE..=op::RECORD_SIZE => {
                want(0)?;
                if code == op::SET_NAME {
                    self.needs_set_name = true;
                }
                Node::Meta(code)
            }
            op::KEY => {
                want(1)?;
                Node::Key(self.int()?)
            }
            op::BIN => {
                want(2)?;
                let t = self.int()?;
                if !(op::ty::NIL..=op::ty::HLL).contains(&t) {
                    return Err(bad("unknown bin type"));
                }
                Node::Bin(t, self.raw_str()?.to_vec())
            }
            op::BIN_TYPE => {
                want(1)?;
                Node::BinType(self.raw_str()?.to_vec())
            }
            op::COND => {
                if argc < 3 || argc.is_multiple_of(2) {
                    return Err(bad("cond needs condition/value pairs and a default"));
                }
                Node::Cond(self.nodes_n(argc, d)?)
            }
            op::LET => self.let_(argc, d)?,
            op::VAR => {
                want(1)?;
                let name = self.raw_str()?;
                let slot = self.scopes.iter().rev().find(|(n, _)| *n == name).map(|s| s.1);
                Node::Var(slot.ok_or(bad("undefined expression variable"))?)
            }
            op::QUOTED => {
                want(1)?;
                let (v, _) = self.value()?;
                if !matches!(v, MsgValue::List(_)) {
                    return Err(bad("quoted value is not a list"));
                }
                Node::Lit(literal_collection(&v)?)
            }
            op::CALL => {
                want(4)?;
                self.call(d)?
            }
            _ => return Err(bad("unknown expression op")),
        })
    }

    fn nodes_n(&mut self, n: usize, depth: usize) -> Result<Vec<Node>, StorageError> {
        let mut v = Vec::with_capacity(n.min(64));
        for _ in 0..n {
            v.push(self.node(depth)?);
        }
        Ok(v)
    }

    fn literal(&mut self) -> Result<Node, StorageError> {
        let (v, _) = self.value()?;
        Ok(Node::Lit(match &v {
            MsgValue::Map(_) => literal_collection(&v)?,
            MsgValue::List(_) => return Err(bad("list value must be quoted")),
            _ => EVal::from_msgpack(&v),
        }))
    }

    fn let_(&mut self, argc: usize, depth: usize) -> Result<Node, StorageError> {
        if argc < 3 || argc.is_multiple_of(2) {
            return Err(bad("let needs name/value pairs and a scope"));
        }
        let mark = self.scopes.len();
        let mut defs = Vec::with_capacity(argc / 2);
        for _ in 0..argc / 2 {
            let name = self.raw_str()?;
            let value = self.node(depth)?;
            if self.vars >= VARS_MAX {
                return Err(bad("too many expression variables"));
            }
            let slot = self.vars;
            self.vars += 1;
            self.scopes.push((name, slot));
            defs.push((slot, value));
        }
        let scope = self.node(depth)?;
        self.scopes.truncate(mark);
        Ok(Node::Let(defs, Box::new(scope)))
    }

    fn call(&mut self, depth: usize) -> Result<Node, StorageError> {
        let ret = self.int()?;
        let module_flags = self.int()?;
        let modify = module_flags & op::MODULE_MODIFY != 0;
        let module = module_flags & !op::MODULE_MODIFY;
        if !matches!(module, op::MODULE_CDT | op::MODULE_BITS | op::MODULE_HLL) {
            return Err(bad("unknown expression call module"));
        }
        let n = self.array_header()?.ok_or(bad("call payload is not a list"))?;
        if n == 0 {
            return Err(bad("empty call payload"));
        }
        let mut code = self.int()?;
        let mut argc = n - 1;
        let mut ctx = None;
        if code == petrel_proto::cdt::OP_CONTEXT_EVAL {
            if argc != 2 || module != op::MODULE_CDT {
                return Err(bad("malformed call context"));
            }
            let (v, raw) = self.value()?;
            if !matches!(v, MsgValue::List(_)) {
                return Err(bad("call context is not a list"));
            }
            ctx = Some(raw.to_vec());
            let inner = self.array_header()?.ok_or(bad("call op is not a list"))?;
            if inner == 0 {
                return Err(bad("empty call op"));
            }
            code = self.int()?;
            argc = inner - 1;
        }
        let args = self.nodes_n(argc, depth)?;
        let bin = Box::new(self.node(depth)?);
        let mut call = Call { ret, module, modify, ctx, code, args, packed: None, bin };
        if call.args.iter().all(|a| matches!(a, Node::Lit(_))) {
            let lits: Vec<EVal<'_>> =
                call.args.iter().filter_map(|a| if let Node::Lit(v) = a { Some(v.reborrow()) } else { None }).collect();
            call.packed = Some(pack_call(&call, &lits).ok_or(bad("call argument cannot be packed"))?);
        }
        Ok(Node::Call(Box::new(call)))
    }
}

/// Operand counts an arithmetic operator accepts.
fn arity(code: i64) -> (usize, usize) {
    match code {
        op::ADD | op::SUB | op::MUL | op::DIV | op::INT_AND | op::INT_OR | op::INT_XOR | op::MIN | op::MAX => {
            (1, usize::MAX)
        }
        op::POW
        | op::LOG
        | op::MOD
        | op::INT_LSHIFT
        | op::INT_RSHIFT
        | op::INT_ARSHIFT
        | op::INT_LSCAN
        | op::INT_RSCAN => (2, 2),
        _ => (1, 1),
    }
}

/// A literal list or map, normalised as a stored one would be (maps in canonical order).
fn literal_collection(v: &MsgValue) -> Result<EVal<'static>, StorageError> {
    let (particle, is_list) = match v {
        MsgValue::List(_) => (petrel_proto::ParticleType::List as u8, true),
        _ => (petrel_proto::ParticleType::Map as u8, false),
    };
    let bytes = crate::cdt::normalize_collection(particle, &msgpack::to_vec(v))?;
    Ok(if is_list { EVal::List(bytes.into()) } else { EVal::Map(bytes.into()) })
}

/// The payload of a call with its evaluated arguments: `[op, args...]`, wrapped with the
/// context as `[0xff, ctx, [op, args...]]`.
pub(crate) fn pack_call(call: &Call, args: &[EVal<'_>]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    if let Some(ctx) = &call.ctx {
        msgpack::encode_list_header(3, &mut out);
        msgpack::encode_int(petrel_proto::cdt::OP_CONTEXT_EVAL, &mut out);
        out.extend_from_slice(ctx);
    }
    msgpack::encode_list_header(args.len() + 1, &mut out);
    msgpack::encode_int(call.code, &mut out);
    for a in args {
        match a {
            // Where an HLL call takes a list of sketches, one sketch (sent as an HLL or a blob)
            // stands for a list of one.
            EVal::Hll(_) | EVal::Blob(_) if call.module == op::MODULE_HLL => {
                msgpack::encode(&MsgValue::List(vec![a.to_msgpack()?]), &mut out)
            }
            _ => msgpack::encode(&a.to_msgpack()?, &mut out),
        }
    }
    Some(out)
}
