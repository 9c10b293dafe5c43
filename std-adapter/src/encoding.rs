//! Commands into bytes: the one place the client turns a core encoder into
//! the `Vec` a command travels in.

use resilis_core::resp::encode::EncodeError;

/// Encodes one command with a core encoder. Small commands (the common
/// case) take one pass into a 128-byte buffer; a larger one learns its exact
/// size from that pass (the encoder keeps counting) and takes a second.
///
/// # Panics
/// If `encode` announces a different number of arguments than it writes:
/// that is a bug in the caller's encoder, never a matter of input, and an
/// empty or truncated command sent to Redis would be worse.
pub(crate) fn encode_vec(
    mut encode: impl FnMut(&mut [u8]) -> Result<usize, EncodeError>,
) -> Vec<u8> {
    const FIRST_TRY: usize = 128;
    let mut out = vec![0; FIRST_TRY];
    let needed = match encode(&mut out) {
        Ok(n) => {
            out.truncate(n);
            return out;
        }
        Err(EncodeError::BufferTooSmall { needed }) => needed,
        Err(e @ EncodeError::ArgCountMismatch { .. }) => {
            panic!("a command encoder is inconsistent: {e:?}")
        }
    };
    out.resize(needed, 0);
    match encode(&mut out) {
        Ok(n) => out.truncate(n),
        // The first pass measured exactly this size.
        Err(e) => panic!("a command encoder changed its size between passes: {e:?}"),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use resilis_core::resp::encode::{self, CommandEncoder};

    #[test]
    fn small_and_large() {
        let v = encode_vec(|b| encode::get(b, b"key"));
        assert_eq!(v, b"*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n");
        let big = vec![b'x'; 1000];
        let v = encode_vec(|b| encode::encode_args(b, &[b"SET", b"k", &big]));
        assert_eq!(v.len(), 4 + 9 + 7 + 7 + 1000 + 2);
        assert!(v.starts_with(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1000\r\nxxx"));
        assert!(v.ends_with(b"xxx\r\n"));
    }

    #[test]
    #[should_panic(expected = "inconsistent")]
    fn an_inconsistent_encoder_fails_loudly() {
        encode_vec(|b| {
            let mut c = CommandEncoder::new(b, 3);
            c.arg(b"GET");
            c.finish()
        });
    }
}
