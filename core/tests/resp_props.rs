//! Property tests of the RESP codec: hostile bytes in any chunking (decoded
//! afresh each time, or resumed), valid streams fed byte by byte, every RESP3
//! type round-tripping, limits holding, and commands decoding back to their
//! arguments.

mod resp_common;

use proptest::prelude::*;
use resilis_core::resp::encode::{self, EncodeError, Sink};
use resilis_core::resp::{DecodeError, Decoded, Frame, Limits, Resume, decode, decode_resume};
use resp_common::{Model, assert_frame, assert_pairs, model};

/// One outcome of feeding a stream, comparable across chunkings. Errors are
/// compared by kind: a limit error reports the length as far as it arrived.
#[derive(Debug, PartialEq)]
enum Step {
    Frame { consumed: usize },
    Error(core::mem::Discriminant<DecodeError>),
}

/// Feeds `stream` in pieces of the given sizes (cycled), decoding everything
/// decodable after each piece, the way a connection does.
fn feed(stream: &[u8], sizes: &[usize], limits: &Limits) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut pending = Vec::new();
    let mut rest = stream;
    let mut sizes = sizes.iter().cycle();
    while !rest.is_empty() {
        let n = (*sizes.next().unwrap_or(&1)).clamp(1, rest.len());
        pending.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        loop {
            match decode(&pending, limits) {
                Ok(Decoded::Frame { consumed, .. }) => {
                    assert!(
                        consumed > 0 && consumed <= pending.len(),
                        "consumed {consumed} of {}",
                        pending.len()
                    );
                    steps.push(Step::Frame { consumed });
                    pending.drain(..consumed);
                }
                Ok(Decoded::Incomplete { needed }) => {
                    if let Some(needed) = needed {
                        assert!(needed > pending.len());
                    }
                    break;
                }
                Err(e) => {
                    steps.push(Step::Error(core::mem::discriminant(&e)));
                    return steps;
                }
            }
        }
    }
    steps
}

/// [`feed`] through `decode_resume`, one state kept across the pieces of each
/// frame. Each answer must be `decode`'s on the same bytes, and a `needed`
/// must hold its promise.
fn feed_resumed(stream: &[u8], sizes: &[usize], limits: &Limits) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut state = Resume::new();
    let mut start = 0;
    let mut end = 0;
    let mut sizes = sizes.iter().cycle();
    while end < stream.len() {
        end = (end + *sizes.next().unwrap_or(&1)).clamp(1, stream.len());
        loop {
            let pending = &stream[start..end];
            let answer = decode_resume(pending, limits, &mut state);
            assert_eq!(
                answer,
                decode(pending, limits),
                "{stream:?} at {start}..{end}"
            );
            match answer {
                Ok(Decoded::Frame { consumed, .. }) => {
                    steps.push(Step::Frame { consumed });
                    start += consumed;
                }
                Ok(Decoded::Incomplete { needed }) => {
                    if let Some(enough) = needed
                        .and_then(|n| start.checked_add(n))
                        .and_then(|frame_end| stream.get(start..frame_end))
                    {
                        assert!(!matches!(
                            decode(enough, limits),
                            Ok(Decoded::Incomplete { .. })
                        ));
                    }
                    break;
                }
                Err(e) => {
                    steps.push(Step::Error(core::mem::discriminant(&e)));
                    return steps;
                }
            }
        }
    }
    steps
}

fn consumed_total(steps: &[Step]) -> usize {
    steps
        .iter()
        .map(|s| {
            if let Step::Frame { consumed } = s {
                *consumed
            } else {
                0
            }
        })
        .sum()
}

fn limits() -> impl Strategy<Value = Limits> {
    prop_oneof![
        Just(Limits::REDIS),
        (0u8..8, 0usize..40, 0usize..10, 0usize..24).prop_map(
            |(max_depth, max_bulk_len, max_aggregate_len, max_elements)| Limits {
                max_depth,
                max_bulk_len,
                max_aggregate_len,
                max_elements,
            }
        ),
    ]
}

/// Random bytes, valid frames, and valid frames with a few bytes changed.
fn stream() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..200),
        prop::collection::vec(model(), 1..4)
            .prop_map(|ms| ms.iter().flat_map(Model::to_bytes).collect()),
        (
            prop::collection::vec(model(), 1..4),
            prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4)
        )
            .prop_map(|(ms, edits)| {
                let mut bytes: Vec<u8> = ms.iter().flat_map(Model::to_bytes).collect();
                for (at, byte) in edits {
                    let i = at.index(bytes.len());
                    bytes[i] = byte;
                }
                bytes
            }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// No panic, `consumed` within the buffer, and chunking never changes the
    /// answer: the frames, where they end, and the kind of error.
    #[test]
    fn any_bytes_any_chunking(bytes in stream(), sizes in prop::collection::vec(1usize..17, 1..8), limits in limits()) {
        let whole = feed(&bytes, &[bytes.len().max(1)], &limits);
        let chunked = feed(&bytes, &sizes, &limits);
        prop_assert_eq!(&whole, &chunked);
        prop_assert!(consumed_total(&whole) <= bytes.len());
    }

    /// Resuming gives what decoding afresh gives, however the stream is cut:
    /// at every step, and so in the end.
    #[test]
    fn resumed_equals_afresh_any_chunking(bytes in stream(), sizes in prop::collection::vec(1usize..17, 1..8), limits in limits()) {
        let whole = feed(&bytes, &[bytes.len().max(1)], &limits);
        let resumed = feed_resumed(&bytes, &sizes, &limits);
        prop_assert_eq!(&whole, &resumed);
        let by_byte = feed_resumed(&bytes, &[1], &limits);
        prop_assert_eq!(&whole, &by_byte);
    }

    /// A valid stream fed one byte at a time gives the same frames, in the
    /// same places, as fed whole; each is the model that was encoded.
    #[test]
    fn byte_by_byte_equals_whole(models in prop::collection::vec(model(), 1..5)) {
        let bytes: Vec<u8> = models.iter().flat_map(Model::to_bytes).collect();
        let whole = feed(&bytes, &[bytes.len()], &Limits::REDIS);
        let by_byte = feed(&bytes, &[1], &Limits::REDIS);
        prop_assert_eq!(&whole, &by_byte);
        prop_assert_eq!(whole.len(), models.len());
        prop_assert_eq!(consumed_total(&whole), bytes.len());

        let mut at = 0;
        for m in &models {
            let encoded = m.to_bytes();
            // Every proper prefix is incomplete, never an error.
            for cut in [0, encoded.len() / 3, encoded.len() / 2, encoded.len() - 1] {
                let r = decode(&bytes[at..at + cut], &Limits::REDIS);
                prop_assert!(matches!(r, Ok(Decoded::Incomplete { .. })), "{:?} at {}", r, cut);
            }
            at += encoded.len();
        }
    }

    /// Every RESP3 type, nested and with attributes, decodes to what was
    /// encoded.
    #[test]
    fn resp3_round_trip(m in model(), trailing in prop::collection::vec(any::<u8>(), 0..8)) {
        let mut bytes = m.to_bytes();
        let len = bytes.len();
        bytes.extend_from_slice(&trailing);
        let Ok(Decoded::Frame { frame, attributes, consumed }) = decode(&bytes, &Limits::REDIS) else {
            return Err(TestCaseError::fail(format!("{:?}", decode(&bytes, &Limits::REDIS))));
        };
        prop_assert_eq!(consumed, len);
        let (expected_attrs, value) = m.top_level();
        match (expected_attrs, attributes) {
            (Some(pairs), Some(agg)) => assert_pairs(pairs, agg),
            (None, None) => {}
            (e, a) => prop_assert!(false, "attributes {:?} vs {:?}", e, a),
        }
        assert_frame(value, frame);
    }

    /// Limits hold exactly: a frame within them decodes, one beyond them
    /// fails with a limit error (never a panic, never a frame).
    #[test]
    fn limits_are_exact(m in model(), max_depth in 0u8..6, max_bulk_len in 0usize..30, max_aggregate_len in 0usize..10, max_elements in 0usize..40) {
        let limits = Limits { max_depth, max_bulk_len, max_aggregate_len, max_elements };
        let bytes = m.to_bytes();
        let fits = m.depth() <= usize::from(max_depth)
            && m.longest_bulk() <= max_bulk_len
            && m.widest() <= max_aggregate_len
            && m.elements() <= max_elements;
        match decode(&bytes, &limits) {
            Ok(Decoded::Frame { consumed, .. }) => prop_assert!(fits && consumed == bytes.len()),
            Err(
                DecodeError::TooDeep { .. }
                | DecodeError::BulkTooLong { .. }
                | DecodeError::AggregateTooLong { .. }
                | DecodeError::TooManyElements { .. },
            ) => prop_assert!(!fits),
            other => prop_assert!(false, "{:?}", other),
        }
    }

    /// Commands decode back to their arguments, whatever bytes those hold;
    /// a short buffer reports the exact length needed.
    #[test]
    fn commands_round_trip(args in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 0..8), short in any::<prop::sample::Index>()) {
        let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        let len = encode::encoded_len(&args);
        let mut buf = vec![0u8; len];
        prop_assert_eq!(encode::encode_args(&mut buf, &args), Ok(len));
        let Ok(Decoded::Frame { frame: Frame::Array(a), consumed, .. }) = decode(&buf, &Limits::REDIS) else {
            return Err(TestCaseError::fail("not an array"));
        };
        prop_assert_eq!(consumed, len);
        let decoded: Vec<Frame<'_>> = a.iter().collect();
        let expected: Vec<Frame<'_>> = args.iter().map(|a| Frame::BulkString(a)).collect();
        prop_assert_eq!(decoded, expected);

        let mut small = vec![0u8; short.index(len)];
        prop_assert_eq!(encode::encode_args(&mut small, &args), Err(EncodeError::BufferTooSmall { needed: len }));

        let mut v: heapless::Vec<u8, 256> = heapless::Vec::new();
        match v.append_with(|b| encode::encode_args(b, &args)) {
            Ok(n) => prop_assert_eq!(&v[..n], &buf[..]),
            Err(e) => {
                prop_assert!(len > 256 && v.is_empty());
                prop_assert_eq!(e, EncodeError::BufferTooSmall { needed: len });
            }
        }
    }

    /// Integer arguments are the decimal text Redis parses.
    #[test]
    fn integer_arguments(i in any::<i64>(), u in any::<u64>()) {
        let mut buf = [0u8; 128];
        let mut cmd = encode::CommandEncoder::new(&mut buf, 2);
        cmd.arg_int(i).arg_uint(u);
        let n = cmd.finish().unwrap();
        let Ok(Decoded::Frame { frame: Frame::Array(a), .. }) = decode(&buf[..n], &Limits::REDIS) else {
            return Err(TestCaseError::fail("not an array"));
        };
        let items: Vec<Frame<'_>> = a.iter().collect();
        let (i, u) = (i.to_string(), u.to_string());
        prop_assert_eq!(items, vec![Frame::BulkString(i.as_bytes()), Frame::BulkString(u.as_bytes())]);
    }
}
