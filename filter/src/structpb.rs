//! Envoy hands `on_configure` a `google.protobuf.Struct` plugin configuration as the serialized
//! protobuf, not as JSON (observed with Envoy 1.40; a `StringValue` arrives as its raw text).
//! This decodes that Struct into the same JSON value a JSON config would give, so both forms
//! go through one validator and yield the same canonical content hash.

use std::collections::BTreeMap;

use prost::Message as _;
use serde_json::{Map, Number, Value};

#[derive(Clone, PartialEq, prost::Message)]
pub struct Struct {
    #[prost(btree_map = "string, message", tag = "1")]
    pub fields: BTreeMap<String, PbValue>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PbValue {
    #[prost(oneof = "Kind", tags = "1, 2, 3, 4, 5, 6")]
    pub kind: Option<Kind>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Kind {
    /// `google.protobuf.NullValue` (an enum, so a varint on the wire).
    #[prost(int32, tag = "1")]
    Null(i32),
    #[prost(double, tag = "2")]
    Number(f64),
    #[prost(string, tag = "3")]
    String(String),
    #[prost(bool, tag = "4")]
    Bool(bool),
    #[prost(message, tag = "5")]
    Struct(Struct),
    #[prost(message, tag = "6")]
    List(ListValue),
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ListValue {
    #[prost(message, repeated, tag = "1")]
    pub values: Vec<PbValue>,
}

/// Decodes a serialized Struct into a JSON object. Struct numbers are doubles; integral ones
/// become JSON integers so `5` in YAML and `5` in JSON read (and hash) the same.
pub fn decode(bytes: &[u8]) -> Option<Value> {
    let s = Struct::decode(bytes).ok()?;
    Some(struct_to_json(s))
}

fn struct_to_json(s: Struct) -> Value {
    Value::Object(
        s.fields
            .into_iter()
            .map(|(k, v)| (k, to_json(v)))
            .collect::<Map<_, _>>(),
    )
}

fn to_json(v: PbValue) -> Value {
    match v.kind {
        None | Some(Kind::Null(_)) => Value::Null,
        Some(Kind::Number(n)) => number(n),
        Some(Kind::String(s)) => Value::String(s),
        Some(Kind::Bool(b)) => Value::Bool(b),
        Some(Kind::Struct(s)) => struct_to_json(s),
        Some(Kind::List(l)) => Value::Array(l.values.into_iter().map(to_json).collect()),
    }
}

/// A Struct number as JSON: integral values (up to 2^53) as integers.
pub fn number(n: f64) -> Value {
    // 2^53: beyond this a double no longer holds every integer exactly.
    if n.fract() == 0.0 && n.abs() <= 9_007_199_254_740_992.0 {
        Value::Number(Number::from(n as i64))
    } else {
        Number::from_f64(n).map_or(Value::Null, Value::Number)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn val(kind: Kind) -> PbValue {
        PbValue { kind: Some(kind) }
    }

    #[test]
    fn round_trips_every_kind() {
        let mut inner = BTreeMap::new();
        inner.insert("n".to_owned(), val(Kind::Number(5.0)));
        inner.insert("f".to_owned(), val(Kind::Number(0.5)));
        let mut fields = BTreeMap::new();
        fields.insert("s".to_owned(), val(Kind::String("x".into())));
        fields.insert("b".to_owned(), val(Kind::Bool(true)));
        fields.insert("z".to_owned(), val(Kind::Null(0)));
        fields.insert("o".to_owned(), val(Kind::Struct(Struct { fields: inner })));
        fields.insert(
            "l".to_owned(),
            val(Kind::List(ListValue {
                values: vec![val(Kind::String("a".into())), val(Kind::Number(-2.0))],
            })),
        );
        let bytes = Struct { fields }.encode_to_vec();
        assert_eq!(
            decode(&bytes).unwrap(),
            serde_json::json!({"s":"x","b":true,"z":null,"o":{"n":5,"f":0.5},"l":["a",-2]})
        );
    }

    #[test]
    fn garbage_is_refused() {
        assert!(decode(b"\x0a\xff\xff\xff\xff\x0f").is_none());
        assert!(decode(b"not json {").is_none());
    }
}
