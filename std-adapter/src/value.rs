//! Owned reply values, built from the core's borrowed frames, and the two
//! conversion traits: [`ToArg`] for command arguments, [`FromValue`] for
//! typed replies.

use std::collections::HashMap;

use resilis_core::resp::Frame;

use crate::error::Error;

/// A reply from Redis (RESP2 or RESP3), owned.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// RESP2 null bulk/array, RESP3 `_`.
    Nil,
    /// `+OK`: the commonest status, kept without allocating.
    Okay,
    /// Any other simple string (`+PONG`, `+QUEUED`...).
    Status(String),
    Int(i64),
    /// A bulk string: binary-safe.
    Bulk(Vec<u8>),
    Array(Vec<Value>),
    /// RESP3 map, in the server's order.
    Map(Vec<(Value, Value)>),
    Set(Vec<Value>),
    Bool(bool),
    Double(f64),
    /// RESP3 big number, as its digits.
    BigNumber(String),
    /// RESP3 verbatim string: its three-letter format (`txt`, `mkd`) and text.
    /// (The format is kept as its three bytes: a `String` there would make
    /// every `Value` 48 bytes instead of 32.)
    Verbatim {
        format: [u8; 3],
        text: String,
    },
    /// An error nested in an aggregate (e.g. in an `EXEC` reply). A top-level
    /// error reply is [`Error::Server`] instead.
    Error(String),
    /// A RESP3 push (pub/sub message, invalidation).
    Push(Vec<Value>),
}

impl Value {
    /// Copies a borrowed frame. Recursion is bounded by the decoder's
    /// validated nesting depth (`Limits::max_depth`).
    pub fn from_frame(frame: &Frame<'_>) -> Value {
        match *frame {
            Frame::SimpleString(b"OK") => Value::Okay,
            Frame::SimpleString(s) => Value::Status(lossy(s)),
            Frame::SimpleError(e) | Frame::BulkError(e) => Value::Error(lossy(e)),
            Frame::Integer(i) => Value::Int(i),
            Frame::BulkString(b) => Value::Bulk(b.to_vec()),
            Frame::Null => Value::Nil,
            Frame::Array(a) => Value::Array(a.iter().map(|f| Value::from_frame(&f)).collect()),
            Frame::Set(a) => Value::Set(a.iter().map(|f| Value::from_frame(&f)).collect()),
            Frame::Push(a) => Value::Push(a.iter().map(|f| Value::from_frame(&f)).collect()),
            Frame::Map(a) => {
                let mut pairs = Vec::with_capacity(a.len() / 2);
                let mut it = a.iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    pairs.push((Value::from_frame(&k), Value::from_frame(&v)));
                }
                Value::Map(pairs)
            }
            Frame::Boolean(b) => Value::Bool(b),
            Frame::Double(d) => Value::Double(d.value()),
            Frame::BigNumber(n) => Value::BigNumber(lossy(n)),
            Frame::Verbatim { format, text } => Value::Verbatim {
                format,
                text: lossy(text),
            },
        }
    }

    /// The bytes of a bulk, status or verbatim string.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bulk(b) => Some(b),
            Value::Status(s) => Some(s.as_bytes()),
            Value::Okay => Some(b"OK"),
            Value::Verbatim { text, .. } => Some(text.as_bytes()),
            _ => None,
        }
    }

    pub fn is_nil(&self) -> bool {
        matches!(self, Value::Nil)
    }

    fn kind(&self) -> &'static str {
        match self {
            Value::Nil => "nil",
            Value::Okay | Value::Status(_) => "status",
            Value::Int(_) => "integer",
            Value::Bulk(_) => "bulk string",
            Value::Array(_) => "array",
            Value::Map(_) => "map",
            Value::Set(_) => "set",
            Value::Bool(_) => "boolean",
            Value::Double(_) => "double",
            Value::BigNumber(_) => "big number",
            Value::Verbatim { .. } => "verbatim string",
            Value::Error(_) => "error",
            Value::Push(_) => "push",
        }
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn unexpected(expected: &str, got: &Value) -> Error {
    Error::UnexpectedReply(format!("expected {expected}, got {}", got.kind()))
}

/// A typed view of a reply.
pub trait FromValue: Sized {
    fn from_value(value: Value) -> Result<Self, Error>;

    /// How `Nil` converts; `Option<T>` overrides this to `None`.
    fn from_nil() -> Result<Self, Error> {
        Err(Error::UnexpectedReply("unexpected nil".into()))
    }
}

/// Converts, routing nested errors to [`Error::Server`].
pub(crate) fn convert<T: FromValue>(value: Value) -> Result<T, Error> {
    match value {
        Value::Nil => T::from_nil(),
        Value::Error(e) => Err(Error::Server(e)),
        v => T::from_value(v),
    }
}

impl FromValue for Value {
    fn from_value(value: Value) -> Result<Self, Error> {
        Ok(value)
    }
    fn from_nil() -> Result<Self, Error> {
        Ok(Value::Nil)
    }
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(value: Value) -> Result<Self, Error> {
        convert(value).map(Some)
    }
    fn from_nil() -> Result<Self, Error> {
        Ok(None)
    }
}

impl FromValue for Vec<u8> {
    fn from_value(value: Value) -> Result<Self, Error> {
        match value {
            Value::Bulk(b) => Ok(b),
            Value::Int(i) => Ok(i.to_string().into_bytes()),
            v => v
                .as_bytes()
                .map(<[u8]>::to_vec)
                .ok_or_else(|| unexpected("a string", &v)),
        }
    }
}

impl FromValue for String {
    fn from_value(value: Value) -> Result<Self, Error> {
        match value {
            Value::Bulk(b) => String::from_utf8(b)
                .map_err(|_| Error::UnexpectedReply("a string that is not UTF-8".into())),
            Value::Status(s) => Ok(s),
            Value::Okay => Ok("OK".into()),
            Value::Verbatim { text, .. } => Ok(text),
            Value::Int(i) => Ok(i.to_string()),
            Value::Double(d) => Ok(d.to_string()),
            Value::BigNumber(n) => Ok(n),
            v => Err(unexpected("a string", &v)),
        }
    }
}

impl FromValue for i64 {
    fn from_value(value: Value) -> Result<Self, Error> {
        match value {
            Value::Int(i) => Ok(i),
            Value::Bool(b) => Ok(i64::from(b)),
            Value::Bulk(ref b) => std::str::from_utf8(b)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| unexpected("an integer", &value)),
            v => Err(unexpected("an integer", &v)),
        }
    }
}

impl FromValue for bool {
    fn from_value(value: Value) -> Result<Self, Error> {
        match value {
            Value::Bool(b) => Ok(b),
            Value::Int(i) => Ok(i != 0),
            Value::Okay => Ok(true),
            v => Err(unexpected("a boolean", &v)),
        }
    }
    /// `SET ... NX` answers nil when it did not set.
    fn from_nil() -> Result<Self, Error> {
        Ok(false)
    }
}

impl FromValue for f64 {
    fn from_value(value: Value) -> Result<Self, Error> {
        match value {
            Value::Double(d) => Ok(d),
            Value::Int(i) => Ok(i as f64),
            Value::Bulk(ref b) => std::str::from_utf8(b)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| unexpected("a number", &value)),
            v => Err(unexpected("a number", &v)),
        }
    }
}

impl FromValue for () {
    fn from_value(_: Value) -> Result<Self, Error> {
        Ok(())
    }
    fn from_nil() -> Result<Self, Error> {
        Ok(())
    }
}

impl<T: FromValue> FromValue for Vec<T> {
    fn from_value(value: Value) -> Result<Self, Error> {
        match value {
            Value::Array(items) | Value::Set(items) | Value::Push(items) => {
                items.into_iter().map(convert).collect()
            }
            v => Err(unexpected("an array", &v)),
        }
    }
    fn from_nil() -> Result<Self, Error> {
        Ok(Vec::new())
    }
}

/// From a RESP3 map or a RESP2 flat array of key, value, key, value...
impl<K, V> FromValue for HashMap<K, V>
where
    K: FromValue + Eq + std::hash::Hash,
    V: FromValue,
{
    fn from_value(value: Value) -> Result<Self, Error> {
        match value {
            Value::Map(pairs) => pairs
                .into_iter()
                .map(|(k, v)| Ok((convert(k)?, convert(v)?)))
                .collect(),
            Value::Array(items) => {
                if items.len() % 2 != 0 {
                    return Err(Error::UnexpectedReply(
                        "a flat key/value array of odd length".into(),
                    ));
                }
                let mut map = HashMap::with_capacity(items.len() / 2);
                let mut it = items.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    map.insert(convert(k)?, convert(v)?);
                }
                Ok(map)
            }
            v => Err(unexpected("a map", &v)),
        }
    }
    fn from_nil() -> Result<Self, Error> {
        Ok(HashMap::new())
    }
}

/// Something that can be one argument of a command.
pub trait ToArg {
    /// Appends the argument's bytes to `out`.
    fn write_arg(&self, out: &mut Vec<u8>);
}

macro_rules! bytes_arg {
    ($($t:ty),*) => {$(
        impl ToArg for $t {
            fn write_arg(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(AsRef::<[u8]>::as_ref(self));
            }
        }
    )*};
}
bytes_arg!(str, String, [u8], Vec<u8>);

impl<const N: usize> ToArg for [u8; N] {
    fn write_arg(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }
}

impl<T: ToArg + ?Sized> ToArg for &T {
    fn write_arg(&self, out: &mut Vec<u8>) {
        (**self).write_arg(out);
    }
}

macro_rules! int_arg {
    ($($t:ty),*) => {$(
        impl ToArg for $t {
            fn write_arg(&self, out: &mut Vec<u8>) {
                use std::io::Write;
                // Writing to a Vec cannot fail.
                let _ = write!(out, "{self}");
            }
        }
    )*};
}
int_arg!(i8, i16, i32, i64, isize, u8, u16, u32, u64, usize, f64);

#[cfg(test)]
mod tests {
    use super::*;

    /// Every element of a reply becomes one `Value`: its size is what the
    /// cheapest element (`_\r\n`, 3 bytes) costs in memory, and what the
    /// default element bound (`max_frame_len / size_of::<Value>()`) is
    /// worked out from.
    #[test]
    fn a_value_is_32_bytes() {
        assert_eq!(std::mem::size_of::<Value>(), 32);
    }

    #[test]
    fn verbatim_keeps_its_format_and_text() {
        let frame = Frame::Verbatim {
            format: *b"txt",
            text: b"hello",
        };
        let v = Value::from_frame(&frame);
        assert_eq!(
            v,
            Value::Verbatim {
                format: *b"txt",
                text: "hello".into()
            }
        );
        assert_eq!(String::from_value(v).unwrap(), "hello");
    }
}
