//! [`Limited`]: serializes a value while counting how deeply it nests, and
//! refuses it past [`MAX_DEPTH`].
//!
//! serde_json's serializer has no depth limit: a value nested 100 000 deep
//! (a linked list, a tree built by a loop) recursed until the stack
//! overflowed and aborted the process. Its reader stops at a depth of 128
//! (`RecursionLimitExceeded`), so anything deeper could never be read back
//! anyway. Serializing through [`Limited`] stops at the first level past
//! [`MAX_DEPTH`], before the stack is at risk, and nothing is stored that
//! `get_cache` could not decode.
//!
//! The depth counted is the nesting of JSON arrays and objects in the
//! output, exactly as the reader counts it: a sequence, tuple, map or
//! struct is one level; an enum's newtype variant (`{"V": …}`) one; its
//! tuple and struct variants (`{"V": […]}`) two. Newtype structs, `Some`
//! and a `RawValue` (whose text was checked when it was made) add none.

use std::fmt::Display;

use serde::ser::{
    self, Serialize, SerializeMap, SerializeSeq, SerializeStruct, SerializeStructVariant,
    SerializeTuple, SerializeTupleStruct, SerializeTupleVariant, Serializer,
};

/// The deepest nesting of arrays and objects serde_json reads back: its
/// reader's recursion limit is 128 levels, the 128th refused.
pub(crate) const MAX_DEPTH: usize = 127;

/// The struct name serde_json gives a `RawValue` when serializing it.
const RAW_VALUE_TOKEN: &str = "$serde_json::private::RawValue";

/// `value`, serialized with its nesting counted: the error names
/// [`MAX_DEPTH`] when it nests deeper.
pub(crate) struct Limited<'a, T: ?Sized> {
    value: &'a T,
    /// Levels already open around `value`.
    depth: usize,
}

impl<'a, T: ?Sized> Limited<'a, T> {
    /// `value` at the top level.
    pub(crate) fn new(value: &'a T) -> Self {
        Limited { value, depth: 0 }
    }
}

impl<T: Serialize + ?Sized> Serialize for Limited<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(Counting {
            inner: serializer,
            depth: self.depth,
        })
    }
}

/// The error for a value that opens level `depth`.
fn too_deep<E: ser::Error>(depth: usize) -> E {
    E::custom(format_args!(
        "the value nests arrays and objects more than {MAX_DEPTH} levels deep (level {depth} \
         reached); serde_json reads back at most {MAX_DEPTH}, so it is refused rather than \
         stored unreadable; flatten it, or store it as a string"
    ))
}

/// A serializer that passes everything to `inner`, wrapping nested values
/// so their levels are counted.
struct Counting<S> {
    inner: S,
    /// Levels open around the value being serialized.
    depth: usize,
}

impl<S> Counting<S> {
    /// The depth once `levels` more are opened, or the error if too deep.
    fn open<E: ser::Error>(&self, levels: usize) -> Result<usize, E> {
        let depth = self.depth + levels;
        if depth > MAX_DEPTH {
            Err(too_deep(depth))
        } else {
            Ok(depth)
        }
    }
}

/// A compound of `inner` whose elements are `depth` levels deep.
struct Compound<C> {
    inner: C,
    depth: usize,
}

impl<C> Compound<C> {
    fn wrap<'v, T: ?Sized>(&self, value: &'v T) -> Limited<'v, T> {
        Limited {
            value,
            depth: self.depth,
        }
    }
}

impl<S: Serializer> Serializer for Counting<S> {
    type Ok = S::Ok;
    type Error = S::Error;
    type SerializeSeq = Compound<S::SerializeSeq>;
    type SerializeTuple = Compound<S::SerializeTuple>;
    type SerializeTupleStruct = Compound<S::SerializeTupleStruct>;
    type SerializeTupleVariant = Compound<S::SerializeTupleVariant>;
    type SerializeMap = Compound<S::SerializeMap>;
    type SerializeStruct = Compound<S::SerializeStruct>;
    type SerializeStructVariant = Compound<S::SerializeStructVariant>;

    fn serialize_bool(self, v: bool) -> Result<S::Ok, S::Error> {
        self.inner.serialize_bool(v)
    }
    fn serialize_i8(self, v: i8) -> Result<S::Ok, S::Error> {
        self.inner.serialize_i8(v)
    }
    fn serialize_i16(self, v: i16) -> Result<S::Ok, S::Error> {
        self.inner.serialize_i16(v)
    }
    fn serialize_i32(self, v: i32) -> Result<S::Ok, S::Error> {
        self.inner.serialize_i32(v)
    }
    fn serialize_i64(self, v: i64) -> Result<S::Ok, S::Error> {
        self.inner.serialize_i64(v)
    }
    fn serialize_i128(self, v: i128) -> Result<S::Ok, S::Error> {
        self.inner.serialize_i128(v)
    }
    fn serialize_u8(self, v: u8) -> Result<S::Ok, S::Error> {
        self.inner.serialize_u8(v)
    }
    fn serialize_u16(self, v: u16) -> Result<S::Ok, S::Error> {
        self.inner.serialize_u16(v)
    }
    fn serialize_u32(self, v: u32) -> Result<S::Ok, S::Error> {
        self.inner.serialize_u32(v)
    }
    fn serialize_u64(self, v: u64) -> Result<S::Ok, S::Error> {
        self.inner.serialize_u64(v)
    }
    fn serialize_u128(self, v: u128) -> Result<S::Ok, S::Error> {
        self.inner.serialize_u128(v)
    }
    fn serialize_f32(self, v: f32) -> Result<S::Ok, S::Error> {
        self.inner.serialize_f32(v)
    }
    fn serialize_f64(self, v: f64) -> Result<S::Ok, S::Error> {
        self.inner.serialize_f64(v)
    }
    fn serialize_char(self, v: char) -> Result<S::Ok, S::Error> {
        self.inner.serialize_char(v)
    }
    fn serialize_str(self, v: &str) -> Result<S::Ok, S::Error> {
        self.inner.serialize_str(v)
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<S::Ok, S::Error> {
        self.inner.serialize_bytes(v)
    }
    fn serialize_none(self) -> Result<S::Ok, S::Error> {
        self.inner.serialize_none()
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<S::Ok, S::Error> {
        let depth = self.depth;
        self.inner.serialize_some(&Limited { value, depth })
    }
    fn serialize_unit(self) -> Result<S::Ok, S::Error> {
        self.inner.serialize_unit()
    }
    fn serialize_unit_struct(self, name: &'static str) -> Result<S::Ok, S::Error> {
        self.inner.serialize_unit_struct(name)
    }
    fn serialize_unit_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
    ) -> Result<S::Ok, S::Error> {
        self.inner.serialize_unit_variant(name, index, variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<S::Ok, S::Error> {
        let depth = self.depth;
        self.inner
            .serialize_newtype_struct(name, &Limited { value, depth })
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<S::Ok, S::Error> {
        let depth = self.open(1)?;
        self.inner
            .serialize_newtype_variant(name, index, variant, &Limited { value, depth })
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Self::SerializeSeq, S::Error> {
        let depth = self.open(1)?;
        Ok(Compound {
            inner: self.inner.serialize_seq(len)?,
            depth,
        })
    }
    fn serialize_tuple(self, len: usize) -> Result<Self::SerializeTuple, S::Error> {
        let depth = self.open(1)?;
        Ok(Compound {
            inner: self.inner.serialize_tuple(len)?,
            depth,
        })
    }
    fn serialize_tuple_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleStruct, S::Error> {
        let depth = self.open(1)?;
        Ok(Compound {
            inner: self.inner.serialize_tuple_struct(name, len)?,
            depth,
        })
    }
    fn serialize_tuple_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleVariant, S::Error> {
        let depth = self.open(2)?;
        Ok(Compound {
            inner: self
                .inner
                .serialize_tuple_variant(name, index, variant, len)?,
            depth,
        })
    }
    fn serialize_map(self, len: Option<usize>) -> Result<Self::SerializeMap, S::Error> {
        let depth = self.open(1)?;
        Ok(Compound {
            inner: self.inner.serialize_map(len)?,
            depth,
        })
    }
    fn serialize_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStruct, S::Error> {
        // serde_json writes a RawValue's checked text as it is.
        let depth = if name == RAW_VALUE_TOKEN {
            self.depth
        } else {
            self.open(1)?
        };
        Ok(Compound {
            inner: self.inner.serialize_struct(name, len)?,
            depth,
        })
    }
    fn serialize_struct_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStructVariant, S::Error> {
        let depth = self.open(2)?;
        Ok(Compound {
            inner: self
                .inner
                .serialize_struct_variant(name, index, variant, len)?,
            depth,
        })
    }
    fn collect_str<T: Display + ?Sized>(self, value: &T) -> Result<S::Ok, S::Error> {
        self.inner.collect_str(value)
    }
    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

impl<C: SerializeSeq> SerializeSeq for Compound<C> {
    type Ok = C::Ok;
    type Error = C::Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), C::Error> {
        let value = self.wrap(value);
        self.inner.serialize_element(&value)
    }
    fn end(self) -> Result<C::Ok, C::Error> {
        self.inner.end()
    }
}

impl<C: SerializeTuple> SerializeTuple for Compound<C> {
    type Ok = C::Ok;
    type Error = C::Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), C::Error> {
        let value = self.wrap(value);
        self.inner.serialize_element(&value)
    }
    fn end(self) -> Result<C::Ok, C::Error> {
        self.inner.end()
    }
}

impl<C: SerializeTupleStruct> SerializeTupleStruct for Compound<C> {
    type Ok = C::Ok;
    type Error = C::Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), C::Error> {
        let value = self.wrap(value);
        self.inner.serialize_field(&value)
    }
    fn end(self) -> Result<C::Ok, C::Error> {
        self.inner.end()
    }
}

impl<C: SerializeTupleVariant> SerializeTupleVariant for Compound<C> {
    type Ok = C::Ok;
    type Error = C::Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), C::Error> {
        let value = self.wrap(value);
        self.inner.serialize_field(&value)
    }
    fn end(self) -> Result<C::Ok, C::Error> {
        self.inner.end()
    }
}

impl<C: SerializeMap> SerializeMap for Compound<C> {
    type Ok = C::Ok;
    type Error = C::Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), C::Error> {
        let key = self.wrap(key);
        self.inner.serialize_key(&key)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), C::Error> {
        let value = self.wrap(value);
        self.inner.serialize_value(&value)
    }
    fn end(self) -> Result<C::Ok, C::Error> {
        self.inner.end()
    }
}

impl<C: SerializeStruct> SerializeStruct for Compound<C> {
    type Ok = C::Ok;
    type Error = C::Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), C::Error> {
        let value = self.wrap(value);
        self.inner.serialize_field(key, &value)
    }
    fn skip_field(&mut self, key: &'static str) -> Result<(), C::Error> {
        self.inner.skip_field(key)
    }
    fn end(self) -> Result<C::Ok, C::Error> {
        self.inner.end()
    }
}

impl<C: SerializeStructVariant> SerializeStructVariant for Compound<C> {
    type Ok = C::Ok;
    type Error = C::Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), C::Error> {
        let value = self.wrap(value);
        self.inner.serialize_field(key, &value)
    }
    fn skip_field(&mut self, key: &'static str) -> Result<(), C::Error> {
        self.inner.skip_field(key)
    }
    fn end(self) -> Result<C::Ok, C::Error> {
        self.inner.end()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Serialize;
    use serde_json::Value;

    use super::*;

    /// Arrays nested `0` deep around `1`, built by recursion in `serialize`
    /// (no heap value: nothing deep to drop).
    struct Arrays(usize);

    impl Serialize for Arrays {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            if self.0 == 0 {
                return s.serialize_u8(1);
            }
            let mut seq = s.serialize_seq(Some(1))?;
            seq.serialize_element(&Arrays(self.0 - 1))?;
            seq.end()
        }
    }

    #[derive(Serialize)]
    enum Shape {
        Leaf,
        Wrap(Box<Shape>),
        Pair(Box<Shape>, u8),
        Named { inner: Box<Shape> },
    }

    fn json(value: &impl Serialize) -> serde_json::Result<String> {
        serde_json::to_string(&Limited::new(value))
    }

    /// Whether serde_json's reader reads `text` (its depth limit included).
    fn reads_back(text: &str) -> bool {
        serde_json::from_str::<Value>(text).is_ok()
    }

    #[test]
    fn the_limit_is_what_serde_json_reads_back() {
        let at = json(&Arrays(MAX_DEPTH)).expect("the deepest readable value is accepted");
        assert!(reads_back(&at));
        assert_eq!(at, serde_json::to_string(&Arrays(MAX_DEPTH)).unwrap());
        // One more level: serde_json's reader refuses it, and so does the writer.
        assert!(!reads_back(
            &serde_json::to_string(&Arrays(MAX_DEPTH + 1)).unwrap()
        ));
        let e = json(&Arrays(MAX_DEPTH + 1)).unwrap_err().to_string();
        assert!(e.contains("more than 127 levels"), "{e}");
        // 100 000 deep stops at the first level too deep: no stack overflow.
        assert!(json(&Arrays(100_000)).is_err());
    }

    #[test]
    fn every_kind_of_level_counts_as_the_reader_counts_it() {
        // Each case nests `levels` arrays or objects per step.
        let wrap = |n: usize, step: &dyn Fn(Shape) -> Shape| {
            (0..n).fold(Shape::Leaf, |inner, _| step(inner))
        };
        /// One more level of a shape.
        type Step<'a> = &'a dyn Fn(Shape) -> Shape;
        let steps: [(&str, usize, Step); 3] = [
            ("newtype variant", 1, &|s| Shape::Wrap(Box::new(s))),
            ("tuple variant", 2, &|s| Shape::Pair(Box::new(s), 0)),
            ("struct variant", 2, &|s| Shape::Named {
                inner: Box::new(s),
            }),
        ];
        for (what, levels, step) in steps {
            // As deep as fits, then one step more: accepted exactly when
            // serde_json's reader reads the plain output back.
            let fits = MAX_DEPTH / levels;
            let ok = json(&wrap(fits, step)).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert!(reads_back(&ok), "{what}");
            let over = wrap(fits + 1, step);
            assert!(
                !reads_back(&serde_json::to_string(&over).unwrap()),
                "{what}"
            );
            assert!(json(&over).is_err(), "{what}");
        }
        // Maps, structs, tuples, options and newtypes as serde_json writes them.
        #[derive(Serialize)]
        struct Node {
            next: Option<Box<Node>>,
            tag: (u8, Newtype),
        }
        #[derive(Serialize)]
        struct Newtype(BTreeMap<String, u8>);
        let mut node = None;
        for _ in 0..40 {
            node = Some(Box::new(Node {
                next: node,
                tag: (1, Newtype(BTreeMap::from([("k".into(), 1)]))),
            }));
        }
        // 40 structs, the innermost with a tuple holding a map: 42 levels.
        let text = json(&node).unwrap();
        assert_eq!(text, serde_json::to_string(&node).unwrap());
        assert!(reads_back(&text));
    }

    #[test]
    fn raw_values_and_scalars_pass_through_unchanged() {
        let raw = serde_json::value::RawValue::from_string(r#"{"a": [1, 2]}"#.into()).unwrap();
        assert_eq!(json(&raw).unwrap(), r#"{"a": [1, 2]}"#);
        for v in [
            serde_json::json!(null),
            serde_json::json!("x\"y"),
            serde_json::json!(1.5),
            serde_json::json!({"a": [true, {"b": null}]}),
        ] {
            assert_eq!(json(&v).unwrap(), serde_json::to_string(&v).unwrap());
        }
        // An error of the inner serializer still comes through.
        let bad_key: BTreeMap<(u8, u8), u8> = BTreeMap::from([((1, 2), 3)]);
        assert!(json(&bad_key).is_err());
    }
}
