//! Commands as RESP arrays of bulk strings, written into caller memory.
//!
//! Every argument is length-prefixed, so keys and values may hold CR, LF or
//! any other byte; inline commands are never produced.
//!
//! When the buffer is short nothing fails half-way: the encoder keeps
//! counting and [`EncodeError::BufferTooSmall`] says exactly how many bytes
//! the whole command needs, so the caller can flush and retry.
//!
//! Each helper writes into a `&mut [u8]` and returns the length written. To
//! append to a `heapless::Vec` (or, with the `alloc` feature, a `Vec`) or to
//! pipeline several commands into one slice, go through a [`Sink`]:
//!
//! ```
//! use resilis_core::resp::encode::{self, Sink};
//! let mut out: heapless::Vec<u8, 64> = heapless::Vec::new();
//! out.append_with(|b| encode::get(b, b"key")).unwrap();
//! out.append_with(encode::ping).unwrap();
//! assert_eq!(&out[..], b"*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n*1\r\n$4\r\nPING\r\n");
//! ```

use core::fmt;

/// Why a command was not written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum EncodeError {
    /// The command needs `needed` bytes; nothing usable was written.
    BufferTooSmall { needed: usize },
    /// [`CommandEncoder::new`] was told `declared` arguments but given `given`.
    ArgCountMismatch { declared: usize, given: usize },
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            EncodeError::BufferTooSmall { needed } => {
                write!(f, "command needs {needed} bytes of buffer")
            }
            EncodeError::ArgCountMismatch { declared, given } => {
                write!(
                    f,
                    "command declared {declared} arguments but was given {given}"
                )
            }
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for EncodeError {}

/// Writes one command: `new` with the argument count (command name
/// included), one `arg*` call per argument, then `finish`.
///
/// ```
/// use resilis_core::resp::encode::CommandEncoder;
/// let mut buf = [0u8; 64];
/// let mut cmd = CommandEncoder::new(&mut buf, 3);
/// cmd.arg(b"EXPIRE").arg(b"k").arg_uint(10);
/// let n = cmd.finish().unwrap();
/// assert_eq!(&buf[..n], b"*3\r\n$6\r\nEXPIRE\r\n$1\r\nk\r\n$2\r\n10\r\n");
/// ```
#[derive(Debug)]
pub struct CommandEncoder<'b> {
    buf: &'b mut [u8],
    /// Bytes the command needs so far, written or not.
    len: usize,
    /// Everything so far was written; once false, only `len` advances.
    fits: bool,
    declared: usize,
    given: usize,
}

impl<'b> CommandEncoder<'b> {
    pub fn new(buf: &'b mut [u8], argc: usize) -> Self {
        let mut enc = CommandEncoder {
            buf,
            len: 0,
            fits: true,
            declared: argc,
            given: 0,
        };
        enc.header(b'*', argc as u64);
        enc
    }

    pub fn arg(&mut self, arg: &[u8]) -> &mut Self {
        self.header(b'$', arg.len() as u64);
        self.put(arg);
        self.put(b"\r\n");
        self.given += 1;
        self
    }

    pub fn arg_int(&mut self, n: i64) -> &mut Self {
        let mut digits = Digits::new();
        self.arg(digits.signed(n))
    }

    pub fn arg_uint(&mut self, n: u64) -> &mut Self {
        let mut digits = Digits::new();
        self.arg(digits.unsigned(n))
    }

    /// The length written, or why the command is not usable.
    pub fn finish(self) -> Result<usize, EncodeError> {
        if self.given != self.declared {
            return Err(EncodeError::ArgCountMismatch {
                declared: self.declared,
                given: self.given,
            });
        }
        if !self.fits {
            return Err(EncodeError::BufferTooSmall { needed: self.len });
        }
        Ok(self.len)
    }

    fn header(&mut self, marker: u8, n: u64) {
        self.put(&[marker]);
        let mut digits = Digits::new();
        self.put(digits.unsigned(n));
        self.put(b"\r\n");
    }

    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        let end = self.len.saturating_add(bytes.len());
        if self.fits {
            match self.buf.get_mut(self.len..end) {
                Some(dst) => dst.copy_from_slice(bytes),
                None => self.fits = false,
            }
        }
        self.len = end;
    }
}

/// Decimal formatting into a stack buffer: no allocation, no `core::fmt`.
struct Digits([u8; 20]);

impl Digits {
    fn new() -> Self {
        Digits([0; 20])
    }

    fn unsigned(&mut self, mut n: u64) -> &[u8] {
        // u64::MAX has 20 digits: the buffer always has room.
        let mut start = self.0.len();
        loop {
            start -= 1;
            if let Some(d) = self.0.get_mut(start) {
                *d = b'0' + (n % 10) as u8;
            }
            n /= 10;
            if n == 0 || start == 0 {
                break;
            }
        }
        self.0.get(start..).unwrap_or_default()
    }

    fn signed(&mut self, n: i64) -> &[u8] {
        if n >= 0 {
            return self.unsigned(n as u64);
        }
        // |i64::MIN| has 19 digits, so one byte is left for the sign.
        let len = self.unsigned(n.unsigned_abs()).len();
        let start = self.0.len() - len - 1;
        if let Some(sign) = self.0.get_mut(start) {
            *sign = b'-';
        }
        self.0.get(start..).unwrap_or_default()
    }
}

/// The length [`encode_args`] needs for `args`.
pub fn encoded_len(args: &[&[u8]]) -> usize {
    let mut len = header_len(args.len());
    for arg in args {
        len = len
            .saturating_add(header_len(arg.len()))
            .saturating_add(arg.len())
            .saturating_add(2);
    }
    len
}

/// `*n\r\n` or `$n\r\n`.
fn header_len(n: usize) -> usize {
    let mut digits = Digits::new();
    3 + digits.unsigned(n as u64).len()
}

/// Any command given as its arguments, name first.
pub fn encode_args(buf: &mut [u8], args: &[&[u8]]) -> Result<usize, EncodeError> {
    let mut cmd = CommandEncoder::new(buf, args.len());
    for arg in args {
        cmd.arg(arg);
    }
    cmd.finish()
}

/// Somewhere to append whole commands: the helpers all have the shape
/// `fn(&mut [u8], ...) -> Result<usize, EncodeError>`, and a sink hands them
/// the free space after its content, keeping what they report written.
/// On error the sink's content is as before.
pub trait Sink {
    fn append_with<F>(&mut self, encode: F) -> Result<usize, EncodeError>
    where
        F: FnMut(&mut [u8]) -> Result<usize, EncodeError>;
}

/// A slice filled front to back, for pipelining several commands into one
/// buffer.
#[derive(Debug)]
pub struct SliceSink<'b> {
    buf: &'b mut [u8],
    len: usize,
}

impl<'b> SliceSink<'b> {
    pub fn new(buf: &'b mut [u8]) -> Self {
        SliceSink { buf, len: 0 }
    }

    /// The commands written so far.
    pub fn written(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets what was written, e.g. once it has been sent.
    pub fn clear(&mut self) {
        self.len = 0;
    }
}

impl Sink for SliceSink<'_> {
    fn append_with<F>(&mut self, mut encode: F) -> Result<usize, EncodeError>
    where
        F: FnMut(&mut [u8]) -> Result<usize, EncodeError>,
    {
        let free = self.buf.get_mut(self.len..).unwrap_or_default();
        let n = encode(free)?;
        self.len += n;
        Ok(n)
    }
}

// The vectors first do a dry run into an empty slice to learn the exact
// length, then grow by just that much (zero-filled, as safe code must) and
// write the command into the new tail.

impl<const N: usize> Sink for heapless::Vec<u8, N> {
    fn append_with<F>(&mut self, mut encode: F) -> Result<usize, EncodeError>
    where
        F: FnMut(&mut [u8]) -> Result<usize, EncodeError>,
    {
        let old = self.len();
        let needed = match encode(&mut []) {
            Ok(n) => return Ok(n),
            Err(EncodeError::BufferTooSmall { needed }) => needed,
            Err(e) => return Err(e),
        };
        let Some(total) = old.checked_add(needed).filter(|&t| t <= N) else {
            // Reported as the space the command needs, like for a slice.
            return Err(EncodeError::BufferTooSmall { needed });
        };
        if self.resize(total, 0).is_err() {
            return Err(EncodeError::BufferTooSmall { needed });
        }
        let result = encode(self.get_mut(old..).unwrap_or_default());
        self.truncate(old + *result.as_ref().unwrap_or(&0));
        result
    }
}

#[cfg(feature = "alloc")]
impl Sink for alloc::vec::Vec<u8> {
    fn append_with<F>(&mut self, mut encode: F) -> Result<usize, EncodeError>
    where
        F: FnMut(&mut [u8]) -> Result<usize, EncodeError>,
    {
        let old = self.len();
        let needed = match encode(&mut []) {
            Ok(n) => return Ok(n),
            Err(EncodeError::BufferTooSmall { needed }) => needed,
            Err(e) => return Err(e),
        };
        self.resize(old.saturating_add(needed), 0);
        let result = encode(self.get_mut(old..).unwrap_or_default());
        self.truncate(old + *result.as_ref().unwrap_or(&0));
        result
    }
}

// ---- Helpers -------------------------------------------------------------

/// `PING`
/// `ROLE`: what the server is (master, replica, sentinel).
pub fn role(buf: &mut [u8]) -> Result<usize, EncodeError> {
    encode_args(buf, &[b"ROLE"])
}

pub fn ping(buf: &mut [u8]) -> Result<usize, EncodeError> {
    encode_args(buf, &[b"PING"])
}

/// `HELLO protover [AUTH username password] [SETNAME name]`
pub fn hello(
    buf: &mut [u8],
    protover: u8,
    auth: Option<(&[u8], &[u8])>,
    setname: Option<&[u8]>,
) -> Result<usize, EncodeError> {
    let argc = 2 + if auth.is_some() { 3 } else { 0 } + if setname.is_some() { 2 } else { 0 };
    let mut cmd = CommandEncoder::new(buf, argc);
    cmd.arg(b"HELLO").arg_uint(u64::from(protover));
    if let Some((username, password)) = auth {
        cmd.arg(b"AUTH").arg(username).arg(password);
    }
    if let Some(name) = setname {
        cmd.arg(b"SETNAME").arg(name);
    }
    cmd.finish()
}

/// `AUTH [username] password`
pub fn auth(
    buf: &mut [u8],
    username: Option<&[u8]>,
    password: &[u8],
) -> Result<usize, EncodeError> {
    match username {
        Some(user) => encode_args(buf, &[b"AUTH", user, password]),
        None => encode_args(buf, &[b"AUTH", password]),
    }
}

/// `SELECT db`
pub fn select(buf: &mut [u8], db: u32) -> Result<usize, EncodeError> {
    let mut cmd = CommandEncoder::new(buf, 2);
    cmd.arg(b"SELECT").arg_uint(u64::from(db));
    cmd.finish()
}

/// `CLIENT SETNAME name`
pub fn client_setname(buf: &mut [u8], name: &[u8]) -> Result<usize, EncodeError> {
    encode_args(buf, &[b"CLIENT", b"SETNAME", name])
}

/// `GET key`
pub fn get(buf: &mut [u8], key: &[u8]) -> Result<usize, EncodeError> {
    encode_args(buf, &[b"GET", key])
}

/// Expiry of a `SET`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Expiry {
    /// `EX seconds`
    Ex(u64),
    /// `PX milliseconds`
    Px(u64),
}

/// Condition of a `SET`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SetCondition {
    /// Only if the key does not exist.
    Nx,
    /// Only if the key exists.
    Xx,
}

/// Options of a `SET`; the default is a plain `SET key value`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SetOptions {
    pub expiry: Option<Expiry>,
    pub condition: Option<SetCondition>,
    /// `GET`: reply with the old value.
    pub get: bool,
}

/// `SET key value [EX s | PX ms] [NX | XX] [GET]`
pub fn set(
    buf: &mut [u8],
    key: &[u8],
    value: &[u8],
    options: &SetOptions,
) -> Result<usize, EncodeError> {
    let argc = 3
        + if options.expiry.is_some() { 2 } else { 0 }
        + usize::from(options.condition.is_some())
        + usize::from(options.get);
    let mut cmd = CommandEncoder::new(buf, argc);
    cmd.arg(b"SET").arg(key).arg(value);
    match options.expiry {
        Some(Expiry::Ex(s)) => {
            cmd.arg(b"EX").arg_uint(s);
        }
        Some(Expiry::Px(ms)) => {
            cmd.arg(b"PX").arg_uint(ms);
        }
        None => {}
    }
    match options.condition {
        Some(SetCondition::Nx) => {
            cmd.arg(b"NX");
        }
        Some(SetCondition::Xx) => {
            cmd.arg(b"XX");
        }
        None => {}
    }
    if options.get {
        cmd.arg(b"GET");
    }
    cmd.finish()
}

/// `name key...`
fn keys_command(buf: &mut [u8], name: &[u8], keys: &[&[u8]]) -> Result<usize, EncodeError> {
    let mut cmd = CommandEncoder::new(buf, 1 + keys.len());
    cmd.arg(name);
    for key in keys {
        cmd.arg(key);
    }
    cmd.finish()
}

/// `name key field value...` (or `name field value...` without a key)
fn pairs_command(
    buf: &mut [u8],
    name: &[u8],
    key: Option<&[u8]>,
    pairs: &[(&[u8], &[u8])],
) -> Result<usize, EncodeError> {
    let argc = 1 + usize::from(key.is_some()) + 2 * pairs.len();
    let mut cmd = CommandEncoder::new(buf, argc);
    cmd.arg(name);
    if let Some(key) = key {
        cmd.arg(key);
    }
    for (field, value) in pairs {
        cmd.arg(field).arg(value);
    }
    cmd.finish()
}

/// `DEL key...`
pub fn del(buf: &mut [u8], keys: &[&[u8]]) -> Result<usize, EncodeError> {
    keys_command(buf, b"DEL", keys)
}

/// `EXISTS key...`
pub fn exists(buf: &mut [u8], keys: &[&[u8]]) -> Result<usize, EncodeError> {
    keys_command(buf, b"EXISTS", keys)
}

/// `EXPIRE key seconds`
pub fn expire(buf: &mut [u8], key: &[u8], seconds: u64) -> Result<usize, EncodeError> {
    let mut cmd = CommandEncoder::new(buf, 3);
    cmd.arg(b"EXPIRE").arg(key).arg_uint(seconds);
    cmd.finish()
}

/// `TTL key`
pub fn ttl(buf: &mut [u8], key: &[u8]) -> Result<usize, EncodeError> {
    encode_args(buf, &[b"TTL", key])
}

/// `INCR key`
pub fn incr(buf: &mut [u8], key: &[u8]) -> Result<usize, EncodeError> {
    encode_args(buf, &[b"INCR", key])
}

/// `DECR key`
pub fn decr(buf: &mut [u8], key: &[u8]) -> Result<usize, EncodeError> {
    encode_args(buf, &[b"DECR", key])
}

/// `MGET key...`
pub fn mget(buf: &mut [u8], keys: &[&[u8]]) -> Result<usize, EncodeError> {
    keys_command(buf, b"MGET", keys)
}

/// `MSET key value...`
pub fn mset(buf: &mut [u8], pairs: &[(&[u8], &[u8])]) -> Result<usize, EncodeError> {
    pairs_command(buf, b"MSET", None, pairs)
}

/// `HGET key field`
pub fn hget(buf: &mut [u8], key: &[u8], field: &[u8]) -> Result<usize, EncodeError> {
    encode_args(buf, &[b"HGET", key, field])
}

/// `HSET key field value...`
pub fn hset(buf: &mut [u8], key: &[u8], pairs: &[(&[u8], &[u8])]) -> Result<usize, EncodeError> {
    pairs_command(buf, b"HSET", Some(key), pairs)
}

/// `HGETALL key`
pub fn hgetall(buf: &mut [u8], key: &[u8]) -> Result<usize, EncodeError> {
    encode_args(buf, &[b"HGETALL", key])
}

/// `PUBLISH channel message`
pub fn publish(buf: &mut [u8], channel: &[u8], message: &[u8]) -> Result<usize, EncodeError> {
    encode_args(buf, &[b"PUBLISH", channel, message])
}

/// `INFO [section]`
pub fn info(buf: &mut [u8], section: Option<&[u8]>) -> Result<usize, EncodeError> {
    match section {
        Some(section) => encode_args(buf, &[b"INFO", section]),
        None => encode_args(buf, &[b"INFO"]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn wrote(expected: &[u8], encode: impl Fn(&mut [u8]) -> Result<usize, EncodeError>) {
        let mut buf = [0u8; 256];
        let n = encode(&mut buf).expect("fits in 256 bytes");
        assert_eq!(
            core::str::from_utf8(&buf[..n]).unwrap(),
            core::str::from_utf8(expected).unwrap()
        );
        // Exact sizing: one byte less is refused with the exact need.
        for short in [0, n / 2, n - 1] {
            assert_eq!(
                encode(&mut buf[..short]),
                Err(EncodeError::BufferTooSmall { needed: n })
            );
        }
    }

    #[test]
    fn helpers() {
        wrote(b"*1\r\n$4\r\nPING\r\n", ping);
        wrote(b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n", |b| {
            hello(b, 3, None, None)
        });
        wrote(
            b"*7\r\n$5\r\nHELLO\r\n$1\r\n3\r\n$4\r\nAUTH\r\n$1\r\nu\r\n$2\r\npw\r\n$7\r\nSETNAME\r\n$1\r\nn\r\n",
            |b| hello(b, 3, Some((b"u", b"pw")), Some(b"n")),
        );
        wrote(b"*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n", |b| {
            auth(b, None, b"pw")
        });
        wrote(b"*3\r\n$4\r\nAUTH\r\n$1\r\nu\r\n$2\r\npw\r\n", |b| {
            auth(b, Some(b"u"), b"pw")
        });
        wrote(b"*2\r\n$6\r\nSELECT\r\n$2\r\n15\r\n", |b| select(b, 15));
        wrote(
            b"*3\r\n$6\r\nCLIENT\r\n$7\r\nSETNAME\r\n$3\r\nbox\r\n",
            |b| client_setname(b, b"box"),
        );
        wrote(b"*2\r\n$3\r\nGET\r\n$4\r\na\r\nb\r\n", |b| {
            get(b, b"a\r\nb")
        });
        wrote(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n", |b| {
            set(b, b"k", b"", &SetOptions::default())
        });
        let all = SetOptions {
            expiry: Some(Expiry::Px(1500)),
            condition: Some(SetCondition::Nx),
            get: true,
        };
        wrote(
            b"*7\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\nPX\r\n$4\r\n1500\r\n$2\r\nNX\r\n$3\r\nGET\r\n",
            |b| set(b, b"k", b"v", &all),
        );
        let ex = SetOptions {
            expiry: Some(Expiry::Ex(9)),
            condition: Some(SetCondition::Xx),
            get: false,
        };
        wrote(
            b"*6\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\nEX\r\n$1\r\n9\r\n$2\r\nXX\r\n",
            |b| set(b, b"k", b"v", &ex),
        );
        wrote(b"*3\r\n$3\r\nDEL\r\n$1\r\na\r\n$1\r\nb\r\n", |b| {
            del(b, &[b"a", b"b"])
        });
        wrote(b"*2\r\n$6\r\nEXISTS\r\n$1\r\na\r\n", |b| exists(b, &[b"a"]));
        wrote(b"*3\r\n$6\r\nEXPIRE\r\n$1\r\nk\r\n$1\r\n0\r\n", |b| {
            expire(b, b"k", 0)
        });
        wrote(b"*2\r\n$3\r\nTTL\r\n$1\r\nk\r\n", |b| ttl(b, b"k"));
        wrote(b"*2\r\n$4\r\nINCR\r\n$1\r\nk\r\n", |b| incr(b, b"k"));
        wrote(b"*2\r\n$4\r\nDECR\r\n$1\r\nk\r\n", |b| decr(b, b"k"));
        wrote(b"*2\r\n$4\r\nMGET\r\n$1\r\na\r\n", |b| mget(b, &[b"a"]));
        wrote(b"*3\r\n$4\r\nMSET\r\n$1\r\na\r\n$1\r\n1\r\n", |b| {
            mset(b, &[(b"a", b"1")])
        });
        wrote(b"*3\r\n$4\r\nHGET\r\n$1\r\nh\r\n$1\r\nf\r\n", |b| {
            hget(b, b"h", b"f")
        });
        wrote(
            b"*4\r\n$4\r\nHSET\r\n$1\r\nh\r\n$1\r\nf\r\n$1\r\nv\r\n",
            |b| hset(b, b"h", &[(b"f", b"v")]),
        );
        wrote(b"*2\r\n$7\r\nHGETALL\r\n$1\r\nh\r\n", |b| hgetall(b, b"h"));
        wrote(b"*3\r\n$7\r\nPUBLISH\r\n$1\r\nc\r\n$2\r\nhi\r\n", |b| {
            publish(b, b"c", b"hi")
        });
        wrote(b"*1\r\n$4\r\nINFO\r\n", |b| info(b, None));
        wrote(b"*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n", |b| {
            info(b, Some(b"server"))
        });
    }

    #[test]
    fn integers_format_at_the_extremes() {
        let mut cmd_buf = [0u8; 128];
        let mut cmd = CommandEncoder::new(&mut cmd_buf, 4);
        cmd.arg_int(i64::MIN)
            .arg_int(-1)
            .arg_int(0)
            .arg_uint(u64::MAX);
        let n = cmd.finish().unwrap();
        assert_eq!(
            &cmd_buf[..n],
            &b"*4\r\n$20\r\n-9223372036854775808\r\n$2\r\n-1\r\n$1\r\n0\r\n$20\r\n18446744073709551615\r\n"[..]
        );
    }

    #[test]
    fn wrong_argument_count_is_a_local_error() {
        let mut buf = [0u8; 64];
        let mut cmd = CommandEncoder::new(&mut buf, 3);
        cmd.arg(b"GET").arg(b"k");
        assert_eq!(
            cmd.finish(),
            Err(EncodeError::ArgCountMismatch {
                declared: 3,
                given: 2
            })
        );
    }

    #[test]
    fn encoded_len_matches_encode_args() {
        let big = [b'x'; 1000];
        for args in [
            &[][..],
            &[&b"PING"[..]][..],
            &[&b"SET"[..], &b"k"[..], &big[..]][..],
        ] {
            let mut buf = [0u8; 2048];
            assert_eq!(encode_args(&mut buf, args), Ok(encoded_len(args)));
        }
    }

    #[cfg(feature = "alloc")]
    #[test]
    fn alloc_vec_grows_by_exactly_the_command() {
        let value = [b'x'; 300];
        let mut v = alloc::vec::Vec::new();
        let n = v
            .append_with(|b| set(b, b"k", &value, &SetOptions::default()))
            .unwrap();
        assert_eq!(n, encoded_len(&[b"SET", b"k", &value]));
        assert_eq!(v.len(), n);
        assert_eq!(
            v.append_with(|b| CommandEncoder::new(b, 2).finish()),
            Err(EncodeError::ArgCountMismatch {
                declared: 2,
                given: 0
            })
        );
        assert_eq!(v.len(), n);
    }

    #[test]
    fn sinks_append_whole_commands_or_nothing() {
        let mut v: heapless::Vec<u8, 40> = heapless::Vec::new();
        assert_eq!(v.append_with(ping), Ok(14));
        assert_eq!(v.append_with(|b| get(b, b"k")), Ok(20));
        assert_eq!(
            v.append_with(ping),
            Err(EncodeError::BufferTooSmall { needed: 14 })
        );
        assert_eq!(
            &v[..],
            b"*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
        );

        let mut buf = [0u8; 40];
        let mut sink = SliceSink::new(&mut buf);
        sink.append_with(ping).unwrap();
        sink.append_with(ping).unwrap();
        assert_eq!(
            sink.append_with(ping),
            Err(EncodeError::BufferTooSmall { needed: 14 })
        );
        assert_eq!(sink.written(), b"*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nPING\r\n");
    }
}
