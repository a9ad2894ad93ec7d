//! RowBinary, ClickHouse's positional binary row format, written from a row's `Serialize` into
//! a plain byte vector. The sink encodes each row the moment its event is decoded, while the
//! event's bytes are still in cache, and keeps only the encoded bytes: no decoded event or row
//! struct outlives its line, so a batch's working set is its records plus its rows' bytes.
//!
//! Only what bluetick's rows hold is supported: integers, floats, booleans, strings and
//! bytes (as `String` columns), and structs of them. Anything else is an error, never a
//! guess at a layout ClickHouse would read differently.

use serde::ser::{self, Impossible, Serialize};

/// A row that holds a value RowBinary has no layout for here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot encode as RowBinary: {0}")]
pub struct RowBinaryError(String);

impl ser::Error for RowBinaryError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        RowBinaryError(msg.to_string())
    }
}

/// Appends `row` to `out`. On an error, `out` is left as it was.
pub fn write<T: Serialize + ?Sized>(row: &T, out: &mut Vec<u8>) -> Result<(), RowBinaryError> {
    let start = out.len();
    let result = row.serialize(&mut Writer(out));
    if result.is_err() {
        out.truncate(start);
    }
    result
}

struct Writer<'o>(&'o mut Vec<u8>);

impl Writer<'_> {
    /// A string's length, as LEB128.
    #[inline]
    fn length(&mut self, mut n: usize) {
        while n >= 0x80 {
            self.0.push((n as u8) | 0x80);
            n >>= 7;
        }
        self.0.push(n as u8);
    }

    fn unsupported(what: &str) -> RowBinaryError {
        RowBinaryError(format!("{what} is not a column type bluetick writes"))
    }
}

/// Fixed-width integers and floats are little-endian, as ClickHouse stores them.
macro_rules! little_endian {
    ($($method:ident $t:ty),*) => {$(
        #[inline]
        fn $method(self, v: $t) -> Result<(), RowBinaryError> {
            self.0.extend_from_slice(&v.to_le_bytes());
            Ok(())
        }
    )*};
}

impl ser::Serializer for &mut Writer<'_> {
    type Ok = ();
    type Error = RowBinaryError;
    type SerializeSeq = Impossible<(), RowBinaryError>;
    type SerializeTuple = Impossible<(), RowBinaryError>;
    type SerializeTupleStruct = Impossible<(), RowBinaryError>;
    type SerializeTupleVariant = Impossible<(), RowBinaryError>;
    type SerializeMap = Impossible<(), RowBinaryError>;
    type SerializeStruct = Self;
    type SerializeStructVariant = Impossible<(), RowBinaryError>;

    little_endian!(
        serialize_i8 i8, serialize_i16 i16, serialize_i32 i32, serialize_i64 i64,
        serialize_i128 i128, serialize_u8 u8, serialize_u16 u16, serialize_u32 u32,
        serialize_u64 u64, serialize_u128 u128, serialize_f32 f32, serialize_f64 f64
    );

    #[inline]
    fn serialize_bool(self, v: bool) -> Result<(), RowBinaryError> {
        self.0.push(u8::from(v));
        Ok(())
    }

    #[inline]
    fn serialize_str(self, v: &str) -> Result<(), RowBinaryError> {
        self.serialize_bytes(v.as_bytes())
    }

    #[inline]
    fn serialize_bytes(self, v: &[u8]) -> Result<(), RowBinaryError> {
        self.length(v.len());
        self.0.extend_from_slice(v);
        Ok(())
    }

    #[inline]
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), RowBinaryError> {
        value.serialize(self)
    }

    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, RowBinaryError> {
        Ok(self)
    }

    fn serialize_char(self, _: char) -> Result<(), RowBinaryError> {
        Err(Writer::unsupported("a char"))
    }
    fn serialize_none(self) -> Result<(), RowBinaryError> {
        Err(Writer::unsupported("an Option"))
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<(), RowBinaryError> {
        Err(Writer::unsupported("an Option"))
    }
    fn serialize_unit(self) -> Result<(), RowBinaryError> {
        Err(Writer::unsupported("a unit"))
    }
    fn serialize_unit_struct(self, name: &'static str) -> Result<(), RowBinaryError> {
        Err(Writer::unsupported(name))
    }
    fn serialize_unit_variant(
        self,
        name: &'static str,
        _: u32,
        _: &'static str,
    ) -> Result<(), RowBinaryError> {
        Err(Writer::unsupported(name))
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), RowBinaryError> {
        Err(Writer::unsupported(name))
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, RowBinaryError> {
        Err(Writer::unsupported("a sequence"))
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, RowBinaryError> {
        Err(Writer::unsupported("a tuple"))
    }
    fn serialize_tuple_struct(
        self,
        name: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, RowBinaryError> {
        Err(Writer::unsupported(name))
    }
    fn serialize_tuple_variant(
        self,
        name: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, RowBinaryError> {
        Err(Writer::unsupported(name))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, RowBinaryError> {
        Err(Writer::unsupported("a map"))
    }
    fn serialize_struct_variant(
        self,
        name: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, RowBinaryError> {
        Err(Writer::unsupported(name))
    }
}

impl ser::SerializeStruct for &mut Writer<'_> {
    type Ok = ();
    type Error = RowBinaryError;

    #[inline]
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        _: &'static str,
        value: &T,
    ) -> Result<(), RowBinaryError> {
        value.serialize(&mut **self)
    }

    fn end(self) -> Result<(), RowBinaryError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;

    #[derive(Serialize)]
    struct Row<'a> {
        flag: u8,
        ts: u32,
        ms: u64,
        code: i32,
        name: &'a str,
        empty: &'a str,
        wrapped: Wrapped,
    }

    #[derive(Serialize)]
    struct Wrapped(u16);

    #[test]
    fn fields_in_order_little_endian_strings_length_prefixed() {
        let row = Row {
            flag: 1,
            ts: 0x0102_0304,
            ms: 5,
            code: -2,
            name: "ab",
            empty: "",
            wrapped: Wrapped(0x0a0b),
        };
        let mut out = vec![0xee];
        write(&row, &mut out).expect("encodes");
        assert_eq!(
            out,
            [
                0xee, // what was there before
                1,    // flag
                4, 3, 2, 1, // ts
                5, 0, 0, 0, 0, 0, 0, 0, // ms
                0xfe, 0xff, 0xff, 0xff, // code
                2, b'a', b'b', // name
                0,    // empty
                0x0b, 0x0a, // wrapped
            ]
        );
    }

    #[test]
    fn long_strings_take_a_leb128_length() {
        let long = "x".repeat(300);
        let mut out = Vec::new();
        write(&long.as_str(), &mut out).expect("encodes");
        assert_eq!(&out[..2], &[0xac, 0x02]);
        assert_eq!(out.len(), 302);
    }

    #[test]
    fn what_has_no_layout_is_refused_and_leaves_the_buffer_as_it_was() {
        #[derive(Serialize)]
        struct Bad {
            ok: u32,
            maybe: Option<u32>,
        }
        let mut out = vec![7];
        let err = write(&Bad { ok: 1, maybe: None }, &mut out).expect_err("no Option layout");
        assert!(err.to_string().contains("Option"), "{err}");
        assert_eq!(out, [7]);
    }
}
