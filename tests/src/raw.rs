//! A deliberately tiny, blocking RESP client over `std::net::TcpStream`.
//!
//! It exists so the tests can check server-side state (a counter, a key that
//! must not exist) without going through the library under test: a bug in
//! resilis must never be able to hide itself by also breaking the checker.
//! It speaks RESP2 and RESP3 replies, has timeouts on every read, and no
//! pipelining, pooling or reconnection.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// How long one raw exchange may take before the helper gives up; long
/// enough for a loaded CI machine, short enough that a hung server fails
/// the test instead of hanging it.
pub const RAW_IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest bulk string or aggregate the helper accepts, so that a hostile or
/// confused peer cannot make the checker itself allocate without bound.
const MAX_LEN: usize = 64 * 1024 * 1024;
const MAX_DEPTH: usize = 64;

/// One decoded reply. RESP3-only types are kept apart so a test can tell
/// which protocol the server answered in.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// `+OK`
    Simple(String),
    /// `-ERR ...`, kept whole (code and message).
    Error(String),
    /// `:42`
    Integer(i64),
    /// `$n` bulk string (lossily decoded as UTF-8 for display; raw bytes kept).
    Bulk(Vec<u8>),
    /// `$-1`, `*-1` or RESP3 `_`.
    Nil,
    /// `*n`, and RESP3 sets `~` and pushes `>`.
    Array(Vec<Reply>),
    /// RESP3 `%` map, as key/value pairs in wire order.
    Map(Vec<(Reply, Reply)>),
    /// RESP3 `#t` / `#f`.
    Boolean(bool),
    /// RESP3 `,` double, `(` big number and `=` verbatim string, as text.
    Other(String),
}

impl Reply {
    /// True for `-...` replies, so assertions read naturally.
    pub fn is_error(&self) -> bool {
        matches!(self, Reply::Error(_))
    }
}

/// Renders like `redis-cli` does, close enough for `assert_eq!` in tests:
/// strings bare, errors as `(error) ERR ...`, nil as `(nil)`, aggregates one
/// element per line.
impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::Simple(s) | Reply::Other(s) => f.write_str(s),
            Reply::Error(e) => write!(f, "(error) {e}"),
            Reply::Integer(i) => write!(f, "{i}"),
            Reply::Bulk(b) => f.write_str(&String::from_utf8_lossy(b)),
            Reply::Nil => f.write_str("(nil)"),
            Reply::Boolean(b) => write!(f, "{b}"),
            Reply::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str("\n")?;
                    }
                    write!(f, "{item}")?;
                }
                Ok(())
            }
            Reply::Map(pairs) => {
                for (i, (k, v)) in pairs.iter().enumerate() {
                    if i > 0 {
                        f.write_str("\n")?;
                    }
                    write!(f, "{k}\n{v}")?;
                }
                Ok(())
            }
        }
    }
}

/// One plain TCP connection speaking RESP, for checks and for provoking the
/// server by hand (AUTH with a wrong password, HELLO on a RESP2-only server).
pub struct RawConn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl RawConn {
    /// Connects with a bounded timeout; every later read and write is bounded
    /// by [`RAW_IO_TIMEOUT`] too.
    pub fn connect(addr: SocketAddr) -> io::Result<RawConn> {
        let stream = TcpStream::connect_timeout(&addr, RAW_IO_TIMEOUT)?;
        stream.set_read_timeout(Some(RAW_IO_TIMEOUT))?;
        stream.set_write_timeout(Some(RAW_IO_TIMEOUT))?;
        // Only an optimisation; it fails on a socket the peer already reset,
        // and that reset is what the caller wants to observe.
        let _ = stream.set_nodelay(true);
        let writer = stream.try_clone()?;
        Ok(RawConn {
            reader: BufReader::new(stream),
            writer,
        })
    }

    /// Sends one command as an array of bulk strings and reads one reply.
    pub fn command(&mut self, args: &[&str]) -> io::Result<Reply> {
        self.send(args)?;
        self.read_reply()
    }

    /// Sends one command without waiting for its reply (for pipelining by
    /// hand, or for commands whose reply the test reads later).
    pub fn send(&mut self, args: &[&str]) -> io::Result<()> {
        self.writer.write_all(&encode_command(args))
    }

    /// Writes raw bytes, for frames no well-behaved client would send.
    pub fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.writer.write_all(bytes)
    }

    /// Reads one complete reply (blocking, bounded by the read timeout).
    pub fn read_reply(&mut self) -> io::Result<Reply> {
        read_reply(&mut self.reader, 0)
    }

    /// Reads whatever arrives until the peer closes or `limit` bytes, bounded
    /// by the read timeout; for observing what a proxy or a server sends.
    pub fn read_until_close(&mut self, limit: usize) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        (&mut self.reader)
            .take(limit as u64)
            .read_to_end(&mut out)?;
        Ok(out)
    }

    /// The underlying stream, for tests that need socket options or raw I/O.
    pub fn stream(&self) -> &TcpStream {
        &self.writer
    }
}

/// Encodes a command the way every client does: an array of bulk strings.
pub fn encode_command(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Decodes one reply from any buffered reader, e.g. captured bytes.
pub fn read_reply_from(reader: &mut impl BufRead) -> io::Result<Reply> {
    read_reply(reader, 0)
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn read_line(reader: &mut impl BufRead) -> io::Result<String> {
    let mut line = Vec::new();
    // Bounded like everything else: a line longer than MAX_LEN is an error.
    let n = reader.take(MAX_LEN as u64).read_until(b'\n', &mut line)?;
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed before a complete reply",
        ));
    }
    if !line.ends_with(b"\r\n") {
        return Err(invalid("reply line not terminated by CRLF"));
    }
    line.truncate(line.len() - 2);
    String::from_utf8(line).map_err(|_| invalid("reply line is not UTF-8"))
}

fn parse_len(s: &str) -> io::Result<Option<usize>> {
    let n: i64 = s
        .parse()
        .map_err(|_| invalid(format!("bad length {s:?}")))?;
    if n < 0 {
        return Ok(None);
    }
    let n = n as usize;
    if n > MAX_LEN {
        return Err(invalid(format!("length {n} over the helper's limit")));
    }
    Ok(Some(n))
}

fn read_blob(reader: &mut impl BufRead, len: usize) -> io::Result<Vec<u8>> {
    let mut data = vec![0; len + 2];
    reader.read_exact(&mut data)?;
    if !data.ends_with(b"\r\n") {
        return Err(invalid("bulk string not terminated by CRLF"));
    }
    data.truncate(len);
    Ok(data)
}

fn read_reply(reader: &mut impl BufRead, depth: usize) -> io::Result<Reply> {
    if depth > MAX_DEPTH {
        return Err(invalid("reply nested too deeply"));
    }
    let line = read_line(reader)?;
    let Some(kind) = line.chars().next() else {
        return Err(invalid("empty reply line"));
    };
    let rest = &line[kind.len_utf8()..];
    Ok(match kind {
        '+' => Reply::Simple(rest.to_owned()),
        '-' => Reply::Error(rest.to_owned()),
        ':' => Reply::Integer(rest.parse().map_err(|_| invalid("bad integer"))?),
        '_' => Reply::Nil,
        '#' => Reply::Boolean(rest == "t"),
        ',' | '(' => Reply::Other(rest.to_owned()),
        '$' | '!' | '=' => match parse_len(rest)? {
            None => Reply::Nil,
            Some(len) => {
                let blob = read_blob(reader, len)?;
                match kind {
                    '$' => Reply::Bulk(blob),
                    '!' => Reply::Error(String::from_utf8_lossy(&blob).into_owned()),
                    // Verbatim strings start with a 3-letter format and ':'.
                    _ => Reply::Other(
                        String::from_utf8_lossy(blob.get(4..).unwrap_or(&[])).into_owned(),
                    ),
                }
            }
        },
        '*' | '~' | '>' => match parse_len(rest)? {
            None => Reply::Nil,
            Some(n) => {
                let mut items = Vec::with_capacity(n.min(1024));
                for _ in 0..n {
                    items.push(read_reply(reader, depth + 1)?);
                }
                Reply::Array(items)
            }
        },
        '%' | '|' => {
            let n = parse_len(rest)?.unwrap_or(0);
            let mut pairs = Vec::with_capacity(n.min(1024));
            for _ in 0..n {
                let k = read_reply(reader, depth + 1)?;
                let v = read_reply(reader, depth + 1)?;
                pairs.push((k, v));
            }
            if kind == '|' {
                // An attribute annotates the reply that follows it.
                return read_reply(reader, depth);
            }
            Reply::Map(pairs)
        }
        other => return Err(invalid(format!("unknown reply type {other:?}"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> io::Result<Reply> {
        read_reply(&mut BufReader::new(bytes), 0)
    }

    #[test]
    fn decodes_resp2_and_resp3_shapes() {
        assert_eq!(parse(b"+OK\r\n").unwrap().to_string(), "OK");
        assert_eq!(
            parse(b"$3\r\nfoo\r\n").unwrap(),
            Reply::Bulk(b"foo".to_vec())
        );
        assert_eq!(parse(b"$-1\r\n").unwrap(), Reply::Nil);
        assert_eq!(parse(b":-7\r\n").unwrap(), Reply::Integer(-7));
        assert_eq!(
            parse(b"-ERR nope\r\n").unwrap().to_string(),
            "(error) ERR nope"
        );
        assert_eq!(
            parse(b"*2\r\n$1\r\na\r\n:1\r\n").unwrap().to_string(),
            "a\n1"
        );
        assert_eq!(
            parse(b"%1\r\n+k\r\n#t\r\n").unwrap(),
            Reply::Map(vec![(Reply::Simple("k".into()), Reply::Boolean(true))])
        );
    }

    #[test]
    fn refuses_hostile_shapes_instead_of_allocating() {
        assert!(parse(b"$99999999999\r\n").is_err());
        assert!(parse(&b"*1\r\n".repeat(100)).is_err());
        assert!(parse(b"$3\r\nfo").is_err());
    }

    #[test]
    fn encodes_commands_as_bulk_arrays() {
        assert_eq!(
            encode_command(&["GET", "k"]),
            b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
        );
    }
}
