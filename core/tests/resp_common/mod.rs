//! A model of RESP3 values for the property and differential tests: a
//! proptest strategy that builds frame trees, an encoder written from the
//! spec (independent of the crate's decoder), and a checker that a decoded
//! [`Frame`] is the model.
#![allow(dead_code)]

use proptest::prelude::*;
use resilis_core::resp::{Aggregate, Frame};

#[derive(Clone, Debug)]
pub enum Model {
    Simple(Vec<u8>),
    Error(Vec<u8>),
    Int(i64),
    Bulk(Vec<u8>),
    Null,
    Bool(bool),
    Double(f64),
    Big(Vec<u8>),
    BulkError(Vec<u8>),
    Verbatim([u8; 3], Vec<u8>),
    Array(Vec<Model>),
    Map(Vec<(Model, Model)>),
    Set(Vec<Model>),
    Push(Vec<Model>),
    /// `|n` pairs in front of a value: skipped by iteration, returned by
    /// `decode` at the top level.
    Attributed(Vec<(Model, Model)>, Box<Model>),
}

fn line() -> impl Strategy<Value = Vec<u8>> {
    // Anything but CR and LF.
    prop::collection::vec(
        any::<u8>().prop_filter("no CR/LF", |b| *b != b'\r' && *b != b'\n'),
        0..12,
    )
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop_oneof![any::<u8>(), Just(b'\r'), Just(b'\n')], 0..24)
}

pub fn leaf() -> impl Strategy<Value = Model> {
    prop_oneof![
        line().prop_map(Model::Simple),
        line().prop_map(|mut l| {
            l.splice(0..0, *b"ERR ");
            Model::Error(l)
        }),
        any::<i64>().prop_map(Model::Int),
        bytes().prop_map(Model::Bulk),
        Just(Model::Null),
        any::<bool>().prop_map(Model::Bool),
        prop_oneof![
            any::<f64>(),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(f64::NAN),
            (-1000i32..1000).prop_map(f64::from)
        ]
        .prop_map(Model::Double),
        "-?[0-9]{1,60}".prop_map(|s| Model::Big(s.into_bytes())),
        bytes().prop_map(Model::BulkError),
        (prop::array::uniform3(any::<u8>()), bytes()).prop_map(|(f, t)| Model::Verbatim(f, t)),
    ]
}

/// RESP3 values: every type, nested a few levels, attributes included.
pub fn model() -> impl Strategy<Value = Model> {
    leaf().prop_recursive(4, 48, 6, |inner| {
        let pairs = prop::collection::vec((inner.clone(), inner.clone()), 0..4);
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Model::Array),
            pairs.clone().prop_map(Model::Map),
            prop::collection::vec(inner.clone(), 0..6).prop_map(Model::Set),
            prop::collection::vec(inner.clone(), 0..6).prop_map(Model::Push),
            (
                prop::collection::vec((inner.clone(), inner.clone()), 0..3),
                inner
            )
                .prop_map(|(a, v)| Model::Attributed(a, Box::new(v))),
        ]
    })
}

impl Model {
    pub fn encode(&self, out: &mut Vec<u8>) {
        fn len_line(out: &mut Vec<u8>, marker: u8, n: usize) {
            out.push(marker);
            out.extend_from_slice(n.to_string().as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        fn blob(out: &mut Vec<u8>, marker: u8, data: &[u8]) {
            len_line(out, marker, data.len());
            out.extend_from_slice(data);
            out.extend_from_slice(b"\r\n");
        }
        fn simple(out: &mut Vec<u8>, marker: u8, data: &[u8]) {
            out.push(marker);
            out.extend_from_slice(data);
            out.extend_from_slice(b"\r\n");
        }
        match self {
            Model::Simple(s) => simple(out, b'+', s),
            Model::Error(s) => simple(out, b'-', s),
            Model::Int(n) => simple(out, b':', n.to_string().as_bytes()),
            Model::Bulk(b) => blob(out, b'$', b),
            Model::Null => out.extend_from_slice(b"_\r\n"),
            Model::Bool(b) => out.extend_from_slice(if *b { b"#t\r\n" } else { b"#f\r\n" }),
            Model::Double(d) => simple(out, b',', double_text(*d).as_bytes()),
            Model::Big(s) => simple(out, b'(', s),
            Model::BulkError(b) => blob(out, b'!', b),
            Model::Verbatim(f, t) => {
                let mut payload = f.to_vec();
                payload.push(b':');
                payload.extend_from_slice(t);
                blob(out, b'=', &payload);
            }
            Model::Array(v) | Model::Set(v) | Model::Push(v) => {
                let marker = match self {
                    Model::Array(_) => b'*',
                    Model::Set(_) => b'~',
                    _ => b'>',
                };
                len_line(out, marker, v.len());
                v.iter().for_each(|m| m.encode(out));
            }
            Model::Map(pairs) => {
                len_line(out, b'%', pairs.len());
                encode_pairs(pairs, out);
            }
            Model::Attributed(pairs, value) => {
                len_line(out, b'|', pairs.len());
                encode_pairs(pairs, out);
                value.encode(out);
            }
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }

    /// The attributes `decode` returns at the top level (the last of any run
    /// of them) and the value they annotate.
    pub fn top_level(&self) -> (Option<&[(Model, Model)]>, &Model) {
        let mut attrs = None;
        let mut value = self;
        while let Model::Attributed(a, v) = value {
            attrs = Some(&a[..]);
            value = v;
        }
        (attrs, value)
    }

    /// The value without the attributes iteration skips.
    pub fn bare(&self) -> &Model {
        self.top_level().1
    }

    /// Deepest aggregate nesting, attributes counted as levels like `decode`.
    pub fn depth(&self) -> usize {
        match self {
            Model::Array(v) | Model::Set(v) | Model::Push(v) => {
                1 + v.iter().map(Model::depth).max().unwrap_or(0)
            }
            Model::Map(p) => {
                1 + p
                    .iter()
                    .map(|(k, v)| k.depth().max(v.depth()))
                    .max()
                    .unwrap_or(0)
            }
            Model::Attributed(p, v) => {
                let attr = 1 + p
                    .iter()
                    .map(|(k, v)| k.depth().max(v.depth()))
                    .max()
                    .unwrap_or(0);
                attr.max(v.depth())
            }
            _ => 0,
        }
    }

    /// Longest bulk-like payload (bulk, bulk error, verbatim, big number).
    pub fn longest_bulk(&self) -> usize {
        let pairs = |p: &[(Model, Model)]| {
            p.iter()
                .map(|(k, v)| k.longest_bulk().max(v.longest_bulk()))
                .max()
                .unwrap_or(0)
        };
        match self {
            Model::Bulk(b) | Model::BulkError(b) | Model::Big(b) => b.len(),
            Model::Verbatim(_, t) => t.len() + 4,
            Model::Array(v) | Model::Set(v) | Model::Push(v) => {
                v.iter().map(Model::longest_bulk).max().unwrap_or(0)
            }
            Model::Map(p) => pairs(p),
            Model::Attributed(p, v) => pairs(p).max(v.longest_bulk()),
            _ => 0,
        }
    }

    /// Most elements in one aggregate (2n for maps and attributes).
    pub fn widest(&self) -> usize {
        let pairs = |p: &[(Model, Model)]| {
            p.iter()
                .map(|(k, v)| k.widest().max(v.widest()))
                .max()
                .unwrap_or(0)
                .max(2 * p.len())
        };
        match self {
            Model::Array(v) | Model::Set(v) | Model::Push(v) => {
                v.iter().map(Model::widest).max().unwrap_or(0).max(v.len())
            }
            Model::Map(p) => pairs(p),
            Model::Attributed(p, v) => pairs(p).max(v.widest()),
            _ => 0,
        }
    }

    /// Elements of every aggregate together (2n for maps and attributes), as
    /// `Limits::max_elements` counts them.
    pub fn elements(&self) -> usize {
        let pairs = |p: &[(Model, Model)]| {
            2 * p.len()
                + p.iter()
                    .map(|(k, v)| k.elements() + v.elements())
                    .sum::<usize>()
        };
        match self {
            Model::Array(v) | Model::Set(v) | Model::Push(v) => {
                v.len() + v.iter().map(Model::elements).sum::<usize>()
            }
            Model::Map(p) => pairs(p),
            Model::Attributed(p, v) => pairs(p) + v.elements(),
            _ => 0,
        }
    }
}

fn encode_pairs(pairs: &[(Model, Model)], out: &mut Vec<u8>) {
    for (k, v) in pairs {
        k.encode(out);
        v.encode(out);
    }
}

/// Shortest round-trip text, in the forms Redis sends.
pub fn double_text(d: f64) -> String {
    if d.is_nan() {
        "nan".into()
    } else if d.is_infinite() {
        if d > 0.0 { "inf".into() } else { "-inf".into() }
    } else {
        format!("{d:e}")
    }
}

/// Asserts that `frame` is `model` (attributes inside aggregates skipped).
#[track_caller]
pub fn assert_frame(model: &Model, frame: Frame<'_>) {
    let model = model.bare();
    match (model, frame) {
        (Model::Simple(a), Frame::SimpleString(b))
        | (Model::Error(a), Frame::SimpleError(b))
        | (Model::Bulk(a), Frame::BulkString(b))
        | (Model::Big(a), Frame::BigNumber(b))
        | (Model::BulkError(a), Frame::BulkError(b)) => assert_eq!(&a[..], b),
        (Model::Int(a), Frame::Integer(b)) => assert_eq!(*a, b),
        (Model::Null, Frame::Null) => {}
        (Model::Bool(a), Frame::Boolean(b)) => assert_eq!(*a, b),
        (Model::Double(a), Frame::Double(b)) => {
            let b = b.value();
            assert!(a == &b || (a.is_nan() && b.is_nan()), "{a} vs {b}")
        }
        (Model::Verbatim(f, t), Frame::Verbatim { format, text }) => {
            assert_eq!(f, &format);
            assert_eq!(&t[..], text);
        }
        (Model::Array(v), Frame::Array(a))
        | (Model::Set(v), Frame::Set(a))
        | (Model::Push(v), Frame::Push(a)) => assert_elements(v.iter(), a),
        (Model::Map(p), Frame::Map(a)) => assert_pairs(p, a),
        (m, f) => panic!("expected {m:?}, decoded {f:?}"),
    }
}

#[track_caller]
pub fn assert_pairs(pairs: &[(Model, Model)], agg: Aggregate<'_>) {
    let flat: Vec<&Model> = pairs.iter().flat_map(|(k, v)| [k, v]).collect();
    assert_elements(flat.into_iter(), agg)
}

#[track_caller]
fn assert_elements<'m>(models: impl ExactSizeIterator<Item = &'m Model>, agg: Aggregate<'_>) {
    assert_eq!(models.len(), agg.len());
    let mut frames = agg.iter();
    for m in models {
        let f = frames.next().expect("iterator yields len() frames");
        assert_frame(m, f);
    }
    assert_eq!(frames.next(), None);
}
