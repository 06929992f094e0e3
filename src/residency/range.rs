//! Sizes and byte ranges: vmtouch's `-m SIZE` / `-p RANGE` grammar, and the per-file range it
//! implies. Pure code.
//!
//! Grammar (vmtouch 1.3.1): a size is a `strtod` number (decimals, exponents, hex, leading
//! white space) with an optional last-letter multiplier `k`, `m`, `g` (binary, any case, no
//! `t`). A range is `N` (first N bytes), `A-`, `-B`, `A-B` or `-`; the start is rounded down to
//! a page; an upper bound of 0 means "to the end of the file".

use std::fmt;

/// Why a size or range argument was refused. `Display` is vmtouch's FATAL text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// `bad size. examples: 4096, 4k, 100M, 1.5G`
    BadSize,
    /// `unknown size multiplier: x` (the lowercased last character).
    UnknownMultiplier(char),
    /// `malformed range: multiple hyphens`
    MultipleHyphens,
    /// `range limits out of order`
    OutOfOrder,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::BadSize => f.write_str("bad size. examples: 4096, 4k, 100M, 1.5G"),
            ParseError::UnknownMultiplier(c) => write!(f, "unknown size multiplier: {c}"),
            ParseError::MultipleHyphens => f.write_str("malformed range: multiple hyphens"),
            ParseError::OutOfOrder => f.write_str("range limits out of order"),
        }
    }
}

impl std::error::Error for ParseError {}

/// Parses a size for blobpin's own options: vmtouch's grammar, but a missing number (`k`), NaN
/// and values of 2^63 or more are refused. The result is truncated to an integer.
pub fn parse_size(input: &str) -> Result<u64, ParseError> {
    let (val, had_number) = size_value(input)?;
    if !had_number || val.is_nan() || val >= TWO_POW_63 {
        return Err(ParseError::BadSize);
    }
    Ok(val as u64)
}

/// Parses a size exactly as vmtouch 1.3.1's `parse_size` does, C conversions included: an
/// empty number before a multiplier is 0 (`strtod("")` consumes nothing and leaves nothing),
/// and NaN or a value of 2^63 (which passes its `> INT64_MAX` check) converts to `INT64_MIN`,
/// as x86-64's `cvttsd2si` does.
pub fn parse_size_vmtouch(input: &str) -> Result<i64, ParseError> {
    let (val, _) = size_value(input)?;
    if val.is_nan() || val >= TWO_POW_63 {
        return Ok(i64::MIN);
    }
    Ok(val as i64)
}

/// 2^63, which is what C's `(double)INT64_MAX` rounds to.
const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;

/// The checked value of a size (multiplier applied, not yet truncated) and whether there
/// were digits before the multiplier.
fn size_value(input: &str) -> Result<(f64, bool), ParseError> {
    let Some(last) = input.chars().last() else {
        return Err(ParseError::BadSize);
    };
    let lower = last.to_ascii_lowercase();
    let (number, mult) = if lower.is_ascii_alphabetic() {
        let mult: f64 = match lower {
            'k' => 1024.0,
            'm' => 1024.0 * 1024.0,
            'g' => 1024.0 * 1024.0 * 1024.0,
            other => return Err(ParseError::UnknownMultiplier(other)),
        };
        (&input[..input.len() - 1], mult)
    } else if !last.is_ascii() {
        // A non-ASCII last character: C's isalpha() in the C locale says no, and strtod then
        // stops before it, so it is trailing garbage.
        return Err(ParseError::BadSize);
    } else {
        (input, 1.0)
    };
    // strtod("") converts nothing and leaves nothing over, which vmtouch accepts as 0.
    if number.is_empty() {
        return Ok((0.0, false));
    }
    let val = strtod_whole(number).ok_or(ParseError::BadSize)?;
    if val < 0.0 || val == f64::INFINITY {
        return Err(ParseError::BadSize);
    }
    let val = val * mult;
    // C compares `val > INT64_MAX` with INT64_MAX converted to double (2^63).
    if val > TWO_POW_63 {
        return Err(ParseError::BadSize);
    }
    Ok((val, true))
}

/// `strtod` over the whole string: leading white space, then a decimal or hexadecimal
/// floating-point number, `inf`/`infinity` or `nan`; `None` when anything is left over or no
/// number was found (C's `*tp != '\0'` check).
fn strtod_whole(s: &str) -> Option<f64> {
    let t = s.trim_start_matches([' ', '\t', '\n', '\x0b', '\x0c', '\r']);
    let (neg, body) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let lower = body.to_ascii_lowercase();
    let v = if lower == "inf" || lower == "infinity" {
        f64::INFINITY
    } else if lower == "nan" || (lower.starts_with("nan(") && lower.ends_with(')')) {
        f64::NAN
    } else if let Some(hex) = lower.strip_prefix("0x") {
        parse_hex_float(hex)?
    } else {
        parse_dec_float(body)?
    };
    Some(if neg { -v } else { v })
}

fn parse_dec_float(s: &str) -> Option<f64> {
    // Accept exactly: digits [. digits] [e [+-] digits], with at least one digit in the
    // mantissa (what strtod accepts, minus the forms handled elsewhere).
    let b = s.as_bytes();
    let mut i = 0;
    let mut mant_digits = 0;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
        mant_digits += 1;
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
            mant_digits += 1;
        }
    }
    if mant_digits == 0 {
        return None;
    }
    let mant_end = i;
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        let mut j = i + 1;
        if j < b.len() && (b[j] == b'+' || b[j] == b'-') {
            j += 1;
        }
        let exp_start = j;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        if j > exp_start {
            i = j;
        } else {
            // "1e" parses as 1 with "e" left over: garbage.
            i = mant_end;
        }
    }
    if i != b.len() {
        return None;
    }
    s.parse::<f64>().ok()
}

fn parse_hex_float(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut mant = 0f64;
    let mut digits = 0;
    let mut exp: i64 = 0;
    while i < b.len() && b[i].is_ascii_hexdigit() {
        mant = mant * 16.0 + (b[i] as char).to_digit(16)? as f64;
        i += 1;
        digits += 1;
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        while i < b.len() && b[i].is_ascii_hexdigit() {
            mant = mant * 16.0 + (b[i] as char).to_digit(16)? as f64;
            exp -= 4;
            i += 1;
            digits += 1;
        }
    }
    if digits == 0 {
        return None;
    }
    if i < b.len() && b[i] == b'p' {
        let mut j = i + 1;
        let mut neg = false;
        if j < b.len() && (b[j] == b'+' || b[j] == b'-') {
            neg = b[j] == b'-';
            j += 1;
        }
        let start = j;
        let mut e: i64 = 0;
        while j < b.len() && b[j].is_ascii_digit() {
            e = e.saturating_mul(10).saturating_add((b[j] - b'0') as i64);
            j += 1;
        }
        if j > start {
            exp += if neg { -e } else { e };
            i = j;
        }
    }
    if i != b.len() {
        return None;
    }
    Some(mant * 2f64.powi(exp.clamp(i32::MIN as i64, i32::MAX as i64) as i32))
}

/// The range set by `-p`: where each file's range starts, and its longest length (0 = to EOF).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Range {
    /// Start offset, a multiple of the page size.
    pub offset: u64,
    /// Longest length from `offset`; 0 means unlimited.
    pub max_len: u64,
}

impl Range {
    /// The whole file.
    pub const WHOLE: Range = Range {
        offset: 0,
        max_len: 0,
    };

    /// Applies one `-p` argument on top of `self`, as vmtouch does: the offset is replaced,
    /// and `max_len` only when the new range has an upper bound (so a second `-p A-` keeps
    /// the previous bound: vmtouch quirk Q3, kept because scripts repeat `-p`). Sizes are
    /// parsed strictly ([`parse_size`]).
    pub fn apply(self, input: &str, page_size: u64) -> Result<Range, ParseError> {
        self.apply_with(input, page_size, |s| parse_size(s).map(|v| v as i64))
    }

    /// [`Range::apply`] with vmtouch's own size parser ([`parse_size_vmtouch`]), so absurd
    /// sizes (`nan(1)`, 2^63) behave as in vmtouch: the signed 64-bit values are kept as
    /// their bit patterns, and [`Range::span`] computes as vmtouch does.
    pub fn apply_vmtouch(self, input: &str, page_size: u64) -> Result<Range, ParseError> {
        self.apply_with(input, page_size, parse_size_vmtouch)
    }

    fn apply_with(
        self,
        input: &str,
        page_size: u64,
        parse: impl Fn(&str) -> Result<i64, ParseError>,
    ) -> Result<Range, ParseError> {
        let mut parts = input.split('-');
        let first = parts.next().unwrap_or("");
        let (lower, upper) = match parts.next() {
            None => (0, parse(first)?),
            Some(second) => {
                let lower = if first.is_empty() { 0 } else { parse(first)? };
                let upper = if second.is_empty() { 0 } else { parse(second)? };
                if parts.next().is_some() {
                    return Err(ParseError::MultipleHyphens);
                }
                (lower, upper)
            }
        };
        // C's truncating division; `lower` is negative only for vmtouch's INT64_MIN.
        let page = page_size as i64;
        let offset = lower / page * page;
        let mut max_len = self.max_len as i64;
        if upper != 0 {
            if upper <= offset {
                return Err(ParseError::OutOfOrder);
            }
            max_len = upper.wrapping_sub(offset);
        }
        Ok(Range {
            offset: offset as u64,
            max_len: max_len as u64,
        })
    }

    /// The byte span of a file of `size` bytes this range selects, or `None` when the file is
    /// smaller than the offset (vmtouch: "file ... smaller than offset, skipping"). Computed
    /// in vmtouch's signed 64-bit arithmetic; only an absurd `-p` (see
    /// [`Range::apply_vmtouch`]) gives a span that ends past 2^63, which cannot be mapped.
    pub fn span(self, size: u64) -> Option<Span> {
        let (offset, max_len, size) = (self.offset as i64, self.max_len as i64, size as i64);
        if max_len > 0 && offset.wrapping_add(max_len) < size {
            Some(Span {
                offset: self.offset,
                len: self.max_len,
            })
        } else if offset >= size {
            None
        } else {
            Some(Span {
                offset: self.offset,
                len: size.wrapping_sub(offset) as u64,
            })
        }
    }
}

/// A byte span of one file: page-aligned offset, length in bytes (> 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub offset: u64,
    pub len: u64,
}

impl Span {
    /// Whether the span lies within the first 2^63 bytes (false only for absurd vmtouch
    /// ranges, which must then fail in `mmap` exactly as in vmtouch).
    pub fn is_sane(self) -> bool {
        self.offset
            .checked_add(self.len)
            .is_some_and(|end| end <= i64::MAX as u64)
    }

    /// Pages the span covers (the last one possibly partial).
    pub fn pages(self, page_size: u64) -> u64 {
        self.len.div_ceil(page_size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: u64 = 4096;

    #[test]
    fn sizes_follow_vmtouch() {
        let ok = [
            ("4096", 4096),
            ("4k", 4096),
            ("64M", 64 << 20),
            ("64m", 64 << 20),
            ("1.5G", 1_610_612_736),
            ("1.5M", 1_572_864),
            ("1e9", 1_000_000_000),
            ("0x4000000", 64 << 20),
            (" 64M", 64 << 20),
            ("0", 0),
            ("1.9", 1),
        ];
        for (input, want) in ok {
            assert_eq!(parse_size(input), Ok(want), "{input}");
        }
        let bad = [
            ("", ParseError::BadSize),
            ("-1", ParseError::BadSize),
            ("10T", ParseError::UnknownMultiplier('t')),
            ("64MB", ParseError::UnknownMultiplier('b')),
            ("inf", ParseError::UnknownMultiplier('f')),
            ("abc", ParseError::UnknownMultiplier('c')),
            ("99999999999G", ParseError::BadSize),
            ("12 ", ParseError::BadSize),
            ("k", ParseError::BadSize),
            ("1..2", ParseError::BadSize),
        ];
        for (input, want) in bad {
            assert_eq!(parse_size(input), Err(want), "{input}");
        }
    }

    #[test]
    fn vmtouch_sizes_keep_c_conversions() {
        assert_eq!(parse_size_vmtouch("k"), Ok(0));
        assert_eq!(parse_size_vmtouch("4k"), Ok(4096));
        assert_eq!(parse_size_vmtouch("nan(1)"), Ok(i64::MIN));
        assert_eq!(parse_size_vmtouch("9223372036854775807"), Ok(i64::MIN));
        assert_eq!(parse_size_vmtouch("8589934592G"), Ok(i64::MIN));
        assert_eq!(parse_size_vmtouch("99999999999G"), Err(ParseError::BadSize));
        assert_eq!(parse_size_vmtouch(" k"), Err(ParseError::BadSize));
        assert_eq!(parse_size("9223372036854775807"), Err(ParseError::BadSize));
        // -p nan(1)- : offset INT64_MIN, a span no mmap can take.
        let r = Range::WHOLE.apply_vmtouch("nan(1)-", P).unwrap();
        assert!(!r.span(8192).unwrap().is_sane());
        assert_eq!(
            Range::WHOLE.apply_vmtouch("nan(1)", P),
            Err(ParseError::OutOfOrder)
        );
        assert!(Range::WHOLE
            .apply_vmtouch("k", P)
            .unwrap()
            .span(8192)
            .unwrap()
            .is_sane());
    }

    #[test]
    fn ranges_follow_vmtouch() {
        let r = |s: &str| Range::WHOLE.apply(s, P);
        assert_eq!(
            r("16M"),
            Ok(Range {
                offset: 0,
                max_len: 16 << 20
            })
        );
        assert_eq!(r("-16M"), r("16M"));
        assert_eq!(r("0-16M"), r("16M"));
        assert_eq!(
            r("16M-"),
            Ok(Range {
                offset: 16 << 20,
                max_len: 0
            })
        );
        assert_eq!(r("-"), Ok(Range::WHOLE));
        assert_eq!(r("0"), Ok(Range::WHOLE));
        assert_eq!(r("0-0"), Ok(Range::WHOLE));
        assert_eq!(
            r("5000-9000"),
            Ok(Range {
                offset: 4096,
                max_len: 9000 - 4096
            })
        );
        assert_eq!(r("16M-8M"), Err(ParseError::OutOfOrder));
        assert_eq!(r("4096-4096"), Err(ParseError::OutOfOrder));
        assert_eq!(r("1-2-3"), Err(ParseError::MultipleHyphens));
        assert_eq!(r("1x"), Err(ParseError::UnknownMultiplier('x')));
        // Q3: a second -p without an upper bound keeps the first one's length.
        let twice = r("0-8k").unwrap().apply("16k-", P).unwrap();
        assert_eq!(
            twice,
            Range {
                offset: 16384,
                max_len: 8192
            }
        );
    }

    #[test]
    fn spans_clip_to_the_file() {
        let size = 64 << 20;
        let pages = |s: &str| {
            Range::WHOLE
                .apply(s, P)
                .unwrap()
                .span(size)
                .map(|sp| sp.pages(P))
        };
        assert_eq!(pages("1000-5000"), Some(2));
        assert_eq!(pages("5000-9000"), Some(2));
        assert_eq!(pages("4097-4098"), Some(1));
        assert_eq!(pages("60M-100M"), Some(1024));
        assert_eq!(pages("100M-"), None);
        assert_eq!(pages("-"), Some(16384));
    }
}
