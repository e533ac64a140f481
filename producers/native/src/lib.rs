//! `_headrace_native`: the S3 JSONL source's hot path, without the GIL.
//!
//! `encode_lines(lines, key_field, time_field)` reads, for each JSONL line, the one key field
//! and the event-time field, and returns the Kafka message parts the Python encoder
//! (`producers.encoder.RecordEncoder`) would make from them: the key bytes and the event
//! time in milliseconds since the epoch (and the lines' total length, for the byte counter). The parsing runs with the GIL released, so the
//! runner's thread keeps producing meanwhile.
//!
//! Contract: it answers only when it is sure to give exactly the Python encoder's answer,
//! and returns `None` for the whole list otherwise (a line that is not one valid JSON object,
//! a missing field, a key that is not text or an integer, a time that is not an integer or
//! ISO-8601 text of the common forms below). The caller then takes the Python path, which
//! also finds the poison. So a `None` costs speed, never correctness.
//!
//! Event times understood here: an integer (milliseconds), or text
//! `YYYY-MM-DD[(T| )HH:MM[:SS[.f{1,9}]]][Z|(+|-)HH:MM]`: no offset means UTC (as
//! `event_time_ms`), digits past the sixth fractional one are dropped (as
//! `datetime.fromisoformat`), and the result is the floor of the milliseconds.

use std::borrow::Cow;
use std::fmt;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

/// A key of a JSON object, borrowed from the line when it has no escapes.
struct Name<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Name<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Name<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Name(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Name(Cow::Owned(v.to_owned())))
            }
        }
        deserializer.deserialize_str(V)
    }
}

/// The raw JSON text of the wanted fields of one object (the last one when a name repeats,
/// as a full parse keeps it).
struct Found<'de> {
    key: Option<&'de RawValue>,
    time: Option<&'de RawValue>,
}

struct Wanted<'f> {
    key: Option<&'f str>,
    time: Option<&'f str>,
}

impl<'de, 'f> DeserializeSeed<'de> for &Wanted<'f> {
    type Value = Found<'de>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de, 'f> Visitor<'de> for &Wanted<'f> {
    type Value = Found<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = Found { key: None, time: None };
        while let Some(name) = map.next_key::<Name<'de>>()? {
            let name = name.0.as_ref();
            let is_key = self.key == Some(name);
            let is_time = self.time == Some(name);
            if is_key || is_time {
                let raw: &'de RawValue = map.next_value()?;
                if is_key {
                    found.key = Some(raw);
                }
                if is_time {
                    found.time = Some(raw);
                }
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

/// A record's key: a span of its line (text without escapes, an integer's digits) or bytes.
enum KeyOut {
    Span(usize, usize),
    Owned(Vec<u8>),
}

/// A JSON integer literal (valid JSON has no leading zeros or `+`).
fn is_int(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

fn key_of(raw: &RawValue, line: &[u8]) -> Option<KeyOut> {
    let text = raw.get();
    let start = text.as_ptr() as usize - line.as_ptr() as usize;
    if let Some(inner) = text.strip_prefix('"') {
        let inner = inner.strip_suffix('"')?;
        if !inner.contains('\\') {
            return Some(KeyOut::Span(start + 1, start + 1 + inner.len()));
        }
        let owned: String = serde_json::from_str(text).ok()?;
        return Some(KeyOut::Owned(owned.into_bytes()));
    }
    if is_int(text) && text != "-0" {
        // the text Python's `str(int(text))` gives back ("-0" would be "0")
        return Some(KeyOut::Span(start, start + text.len()));
    }
    None // true/false/null/floats/objects: the Python encoder's encode_key
}

fn time_of(raw: &RawValue) -> Option<i64> {
    let text = raw.get();
    if let Some(inner) = text.strip_prefix('"') {
        let inner = inner.strip_suffix('"')?;
        if inner.contains('\\') {
            return None;
        }
        return iso_ms(inner.as_bytes());
    }
    if is_int(text) {
        return text.parse().ok(); // None past i64: the Python path reads it
    }
    None
}

fn digits(s: &[u8], at: usize, n: usize) -> Option<i64> {
    let part = s.get(at..at + n)?;
    let mut v: i64 = 0;
    for &b in part {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v * 10 + i64::from(b - b'0');
    }
    Some(v)
}

/// Days from 1970-01-01 to a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        4 | 6 | 9 | 11 => 30,
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

/// Milliseconds since the epoch (floor) of ISO-8601 text of the forms in the module doc.
fn iso_ms(s: &[u8]) -> Option<i64> {
    if s.len() < 10 || s[4] != b'-' || s[7] != b'-' {
        return None;
    }
    let (y, m, d) = (digits(s, 0, 4)?, digits(s, 5, 2)?, digits(s, 8, 2)?);
    if y < 1 || !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
        return None;
    }
    let (mut hh, mut mm, mut ss, mut us) = (0, 0, 0, 0);
    let mut at = 10;
    if s.len() > at {
        if s[at] != b'T' && s[at] != b' ' {
            return None;
        }
        if s.get(at + 3) != Some(&b':') {
            return None;
        }
        hh = digits(s, at + 1, 2)?;
        mm = digits(s, at + 4, 2)?;
        at += 6;
        if s.get(at) == Some(&b':') {
            ss = digits(s, at + 1, 2)?;
            at += 3;
            if s.get(at) == Some(&b'.') {
                at += 1;
                let from = at;
                while at < s.len() && s[at].is_ascii_digit() {
                    at += 1;
                }
                let n = at - from;
                if n == 0 || n > 9 {
                    return None;
                }
                let kept = n.min(6);
                us = digits(s, from, kept)? * 10_i64.pow((6 - kept) as u32);
            }
        }
        if hh > 23 || mm > 59 || ss > 59 {
            return None;
        }
    }
    let mut offset_s = 0;
    match s.get(at) {
        None => {}
        Some(b'Z') if at + 1 == s.len() && at > 10 => {}
        Some(&sign @ (b'+' | b'-')) if at + 6 == s.len() && at > 10 && s[at + 3] == b':' => {
            let (oh, om) = (digits(s, at + 1, 2)?, digits(s, at + 4, 2)?);
            if oh > 23 || om > 59 {
                return None;
            }
            offset_s = (oh * 3600 + om * 60) * if sign == b'-' { -1 } else { 1 };
        }
        _ => return None,
    }
    let seconds = days_from_civil(y, m, d) * 86_400 + hh * 3600 + mm * 60 + ss - offset_s;
    Some((seconds * 1_000_000 + us).div_euclid(1000))
}

/// Key and time of one line, or None when the Python path must decide.
fn parse_line(line: &[u8], wanted: &Wanted) -> Option<(Option<KeyOut>, Option<i64>)> {
    // the whole line is UTF-8 (as the Python path checks), not only the fields read
    let text = std::str::from_utf8(line).ok()?;
    let mut de = serde_json::Deserializer::from_str(text);
    let found = wanted.deserialize(&mut de).ok()?;
    de.end().ok()?;
    let key = match wanted.key {
        Some(_) => Some(key_of(found.key?, line)?),
        None => None,
    };
    let time = match wanted.time {
        Some(_) => Some(time_of(found.time?)?),
        None => None,
    };
    Some((key, time))
}

/// The lines' bytes, readable without the GIL: each is kept alive by its own reference.
struct Lines(Vec<(*const u8, usize)>);

// SAFETY: the pointers are into immutable `bytes` objects that `encode_lines` holds a strong
// reference to (in `held`) until after the GIL is taken back.
unsafe impl Send for Lines {}

impl Lines {
    fn get(&self, i: usize) -> &[u8] {
        let (ptr, len) = self.0[i];
        // SAFETY: see the `Send` impl; the objects outlive every use of this slice
        unsafe { std::slice::from_raw_parts(ptr, len) }
    }
}

type Parsed = Vec<(Option<KeyOut>, Option<i64>)>;

/// Key bytes (when `key_field`), event times (when `time_field`) and the total length of
/// every line of `lines` (a list of `bytes`, each one JSON object), or None when any line
/// needs the Python path (see the module doc). Raises TypeError when an item is not `bytes`.
#[pyfunction]
#[pyo3(signature = (lines, key_field, time_field))]
fn encode_lines<'py>(
    py: Python<'py>,
    lines: &Bound<'py, PyList>,
    key_field: Option<&str>,
    time_field: Option<&str>,
) -> PyResult<Option<(Option<Bound<'py, PyList>>, Option<Bound<'py, PyList>>, usize)>> {
    let mut held: Vec<Bound<'py, PyBytes>> = Vec::with_capacity(lines.len());
    let mut spans = Vec::with_capacity(lines.len());
    for item in lines.iter() {
        let b = item.cast_into::<PyBytes>()?;
        let s = b.as_bytes();
        spans.push((s.as_ptr(), s.len()));
        held.push(b);
    }
    let view = Lines(spans);
    let key = key_field.map(str::to_owned);
    let time = time_field.map(str::to_owned);
    let parsed: Option<(Parsed, usize)> = py.detach(move || {
        let wanted = Wanted { key: key.as_deref(), time: time.as_deref() };
        let view = view;
        let mut out = Vec::with_capacity(view.0.len());
        let mut nbytes = 0;
        for i in 0..view.0.len() {
            let line = view.get(i);
            nbytes += line.len();
            out.push(parse_line(line, &wanted)?);
        }
        Some((out, nbytes))
    });
    let Some((parsed, nbytes)) = parsed else {
        return Ok(None);
    };
    let keys = match key_field {
        None => None,
        Some(_) => {
            let items = parsed.iter().zip(&held).map(|((k, _), line)| match k {
                Some(KeyOut::Span(a, b)) => PyBytes::new(py, &line.as_bytes()[*a..*b]),
                Some(KeyOut::Owned(v)) => PyBytes::new(py, v),
                None => PyBytes::new(py, b""), // not reached: a wanted key is always found
            });
            Some(PyList::new(py, items)?)
        }
    };
    let times = match time_field {
        None => None,
        Some(_) => Some(PyList::new(py, parsed.iter().map(|(_, t)| t.unwrap_or(0)))?),
    };
    Ok(Some((keys, times, nbytes)))
}

/// The ISO-8601 reader alone (tests compare it with `datetime.fromisoformat`).
#[pyfunction]
fn iso_to_ms(text: &str) -> Option<i64> {
    iso_ms(text.as_bytes())
}

#[pymodule]
fn _headrace_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(encode_lines, m)?)?;
    m.add_function(wrap_pyfunction!(iso_to_ms, m)?)?;
    Ok(())
}
