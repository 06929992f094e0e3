//! Bencoding (BEP 3), the little of it a .torrent needs: a value tree, a canonical encoder
//! (dictionary keys sorted as raw bytes) and a strict decoder that remembers where the `info`
//! dictionary's bytes are, so its SHA-1 (the info-hash) is taken over exactly what was sent.

use std::collections::BTreeMap;
use std::fmt;

/// A bencoded value. Dictionaries keep keys sorted (a `BTreeMap` over raw bytes), which is the
/// canonical order the encoder must produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Int(i64),
    Bytes(Vec<u8>),
    List(Vec<Value>),
    Dict(BTreeMap<Vec<u8>, Value>),
}

impl Value {
    /// A byte string from text.
    pub fn str(s: &str) -> Value {
        Value::Bytes(s.as_bytes().to_vec())
    }

    /// The dictionary entries, if this is a dictionary.
    pub fn as_dict(&self) -> Option<&BTreeMap<Vec<u8>, Value>> {
        match self {
            Value::Dict(d) => Some(d),
            _ => None,
        }
    }

    /// The bytes, if this is a byte string.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The integer, if this is one.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The items, if this is a list.
    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(l) => Some(l),
            _ => None,
        }
    }

    /// Appends the canonical encoding to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Value::Int(i) => out.extend_from_slice(format!("i{i}e").as_bytes()),
            Value::Bytes(b) => {
                out.extend_from_slice(format!("{}:", b.len()).as_bytes());
                out.extend_from_slice(b);
            }
            Value::List(l) => {
                out.push(b'l');
                for v in l {
                    v.encode_into(out);
                }
                out.push(b'e');
            }
            Value::Dict(d) => {
                out.push(b'd');
                for (k, v) in d {
                    Value::Bytes(k.clone()).encode_into(out);
                    v.encode_into(out);
                }
                out.push(b'e');
            }
        }
    }

    /// The canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }
}

/// Why some bytes are not valid bencoding; `at` is the byte offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    pub at: usize,
    pub what: &'static str,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid bencoding at byte {}: {}", self.at, self.what)
    }
}

impl std::error::Error for DecodeError {}

/// A decoded document and the byte span of the top-level dictionary's `info` value, if any.
#[derive(Debug)]
pub struct Decoded {
    pub value: Value,
    pub info_span: Option<std::ops::Range<usize>>,
}

/// Nesting deeper than this is refused (untrusted input must not blow the stack).
const MAX_DEPTH: usize = 64;

/// Decodes exactly one value spanning all of `buf`.
pub fn decode(buf: &[u8]) -> Result<Decoded, DecodeError> {
    let mut d = Decoder {
        buf,
        pos: 0,
        info_span: None,
    };
    let value = d.value(0)?;
    if d.pos != buf.len() {
        return Err(d.err("trailing bytes after the value"));
    }
    Ok(Decoded {
        value,
        info_span: d.info_span,
    })
}

struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
    info_span: Option<std::ops::Range<usize>>,
}

impl Decoder<'_> {
    fn err(&self, what: &'static str) -> DecodeError {
        DecodeError { at: self.pos, what }
    }

    fn peek(&self) -> Result<u8, DecodeError> {
        self.buf
            .get(self.pos)
            .copied()
            .ok_or_else(|| self.err("unexpected end of input"))
    }

    fn value(&mut self, depth: usize) -> Result<Value, DecodeError> {
        if depth > MAX_DEPTH {
            return Err(self.err("nested too deeply"));
        }
        match self.peek()? {
            b'i' => {
                self.pos += 1;
                let end = self.find(b'e')?;
                let text = &self.buf[self.pos..end];
                let digits = text.strip_prefix(b"-").unwrap_or(text);
                // No leading zeros, no "-0", no empty number.
                let ok =
                    !digits.is_empty() && (digits == b"0" || digits[0] != b'0') && text != b"-0";
                let n = std::str::from_utf8(text)
                    .ok()
                    .filter(|_| ok)
                    .and_then(|t| t.parse::<i64>().ok())
                    .ok_or_else(|| self.err("bad integer"))?;
                self.pos = end + 1;
                Ok(Value::Int(n))
            }
            b'l' => {
                self.pos += 1;
                let mut items = Vec::new();
                while self.peek()? != b'e' {
                    items.push(self.value(depth + 1)?);
                }
                self.pos += 1;
                Ok(Value::List(items))
            }
            b'd' => {
                self.pos += 1;
                let mut map = BTreeMap::new();
                let mut last: Option<Vec<u8>> = None;
                while self.peek()? != b'e' {
                    let key = self.bytes()?;
                    if last.as_ref().is_some_and(|l| *l >= key) {
                        return Err(self.err("dictionary keys not sorted or repeated"));
                    }
                    let start = self.pos;
                    let v = self.value(depth + 1)?;
                    if depth == 0 && key == b"info" {
                        self.info_span = Some(start..self.pos);
                    }
                    last = Some(key.clone());
                    map.insert(key, v);
                }
                self.pos += 1;
                Ok(Value::Dict(map))
            }
            b'0'..=b'9' => Ok(Value::Bytes(self.bytes()?)),
            _ => Err(self.err("unexpected byte")),
        }
    }

    fn find(&self, b: u8) -> Result<usize, DecodeError> {
        self.buf[self.pos..]
            .iter()
            .position(|&c| c == b)
            .map(|i| self.pos + i)
            .ok_or_else(|| self.err("unexpected end of input"))
    }

    fn bytes(&mut self) -> Result<Vec<u8>, DecodeError> {
        if !self.peek()?.is_ascii_digit() {
            return Err(self.err("expected a byte string"));
        }
        let colon = self.find(b':')?;
        let text = &self.buf[self.pos..colon];
        if text.len() > 1 && text[0] == b'0' {
            return Err(self.err("bad string length"));
        }
        let len: usize = std::str::from_utf8(text)
            .ok()
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| self.err("bad string length"))?;
        let start = colon + 1;
        let end = start
            .checked_add(len)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| self.err("string runs past the end of input"))?;
        self.pos = end;
        Ok(self.buf[start..end].to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_canonically_with_sorted_keys() {
        let mut d = BTreeMap::new();
        d.insert(b"zeta".to_vec(), Value::Int(-3));
        d.insert(
            b"alpha".to_vec(),
            Value::List(vec![Value::str("x"), Value::Int(0)]),
        );
        assert_eq!(Value::Dict(d).encode(), b"d5:alphal1:xi0ee4:zetai-3ee");
    }

    #[test]
    fn decodes_what_it_encodes_and_finds_info() {
        let doc = b"d8:announce3:url4:infod6:lengthi5e4:name1:aee";
        let d = decode(doc).unwrap();
        let span = d.info_span.unwrap();
        assert_eq!(&doc[span], b"d6:lengthi5e4:name1:ae");
        assert_eq!(d.value.encode(), doc.to_vec());
    }

    #[test]
    fn rejects_malformed_input() {
        for bad in [
            &b"i01e"[..],
            b"i-0e",
            b"ie",
            b"5:abc",
            b"d1:bi1e1:ai2ee",
            b"l",
            b"i1ei2e",
            b"x",
            b"d1:ai1e1:ai1ee",
            b"99999999999999999999999:a",
        ] {
            assert!(
                decode(bad).is_err(),
                "{:?} accepted",
                String::from_utf8_lossy(bad)
            );
        }
        let deep = "l".repeat(100) + &"e".repeat(100);
        assert!(decode(deep.as_bytes()).is_err());
    }
}
