//! The one report protocol of every script reconciler runs on a server,
//! and its one parser.
//!
//! A script's stdout is a stream of records. A record is `@KIND`, a NUL,
//! the number of its fields in decimal, a NUL, each field followed by a
//! NUL, and a newline:
//!
//! ```text
//! @release\0 2\0 /home/shop/releases\0 0123…cdef\0 \n      (spaces added here)
//! ```
//!
//! No byte of a field can break the framing, whoever made it: fields come
//! from bash strings, `find -printf` and file names, none of which can
//! hold a NUL, and bytes that may (a file's content, a log chunk) travel
//! base64-encoded in their field. A newline, a tab, an `@` or an escape
//! code in an app's file name is just a byte of its field. The newline
//! after each record is for a person reading the stream; the parser
//! skips it.
//!
//! The shell side is `record` in `lib.sh`; `encode` is the same framing in
//! Rust, for tests and for fakes.

use std::borrow::Cow;

/// The most fields a record may have: a bound on what a server can make
/// the parser allocate.
pub const MAX_FIELDS: usize = 100_000;

/// One record: its kind and its fields, as bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// `[a-z0-9-]+`, such as `path`, `done` or `journal-staged`.
    pub kind: String,
    /// Its fields in order, raw: text as the script printed it (read it
    /// with `text`), base64 where the script encoded it.
    pub fields: Vec<Vec<u8>>,
}

impl Record {
    /// A record of `kind` with text fields.
    pub fn new(kind: &str, fields: &[&str]) -> Self {
        Self {
            kind: kind.to_owned(),
            fields: fields.iter().map(|f| f.as_bytes().to_vec()).collect(),
        }
    }

    /// Field `i` as text (invalid UTF-8 replaced), or `""` when absent.
    pub fn text(&self, i: usize) -> Cow<'_, str> {
        self.fields
            .get(i)
            .map_or(Cow::Borrowed(""), |f| String::from_utf8_lossy(f))
    }

    /// Field `i` decoded from base64, when it is.
    pub fn base64(&self, i: usize) -> Option<Vec<u8>> {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(self.fields.get(i)?)
            .ok()
    }

    /// Fields from `i` on, as text.
    pub fn texts_from(&self, i: usize) -> Vec<String> {
        self.fields
            .iter()
            .skip(i)
            .map(|f| String::from_utf8_lossy(f).into_owned())
            .collect()
    }
}

/// Why a stream is not records.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// Something other than `@` starts where a record should: the script
    /// printed to stdout past `record`.
    #[error("byte {at}: expected a record (`@kind`), found {found:?}")]
    NotARecord {
        /// The offset of that byte in the whole stream, from 0.
        at: usize,
        /// Up to 40 bytes from there, lossily decoded, to show what it was.
        found: String,
    },
    /// A record's kind is empty, over 64 bytes, or has a byte other than
    /// `[a-z0-9-]`.
    #[error("byte {at}: a record's kind must be lowercase letters, digits and `-`")]
    BadKind {
        /// The offset of the record's `@` in the whole stream, from 0.
        at: usize,
    },
    /// A record's field count is not decimal digits, or is over
    /// [`MAX_FIELDS`].
    #[error("byte {at}: a record's field count is not a number up to {MAX_FIELDS}")]
    BadCount {
        /// The offset of the record's `@` in the whole stream, from 0.
        at: usize,
    },
    /// The stream ends inside a record: the script was cut off.
    #[error("the stream stops inside a record")]
    Truncated,
}

/// The records in `bytes`: the whole output of a script.
pub fn parse(bytes: &[u8]) -> Result<Vec<Record>, ProtocolError> {
    let mut parser = Parser::default();
    parser.push(bytes);
    let records = parser.records()?;
    if parser.pending() {
        return Err(ProtocolError::Truncated);
    }
    Ok(records)
}

/// A parser fed in pieces, for a stream read as it arrives (a script that
/// holds a lock says so with a record, then waits).
#[derive(Debug, Default)]
pub struct Parser {
    buffer: Vec<u8>,
    /// Bytes of the stream consumed before `buffer`, for error positions.
    consumed: usize,
}

impl Parser {
    /// Adds bytes that arrived.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// Whether bytes of an incomplete record are waiting.
    pub fn pending(&self) -> bool {
        self.buffer.iter().any(|&b| b != b'\n')
    }

    /// Every complete record that arrived, in order; the bytes of an
    /// incomplete one stay for the next call.
    pub fn records(&mut self) -> Result<Vec<Record>, ProtocolError> {
        let mut records = Vec::new();
        let mut at = 0;
        loop {
            while self.buffer.get(at) == Some(&b'\n') {
                at += 1;
            }
            match self.one(at)? {
                Some((record, next)) => {
                    records.push(record);
                    at = next;
                }
                None => break,
            }
        }
        self.buffer.drain(..at);
        self.consumed += at;
        Ok(records)
    }

    /// The record starting at `at`, and where the next starts; `None` when
    /// it has not arrived whole.
    fn one(&self, at: usize) -> Result<Option<(Record, usize)>, ProtocolError> {
        record_at(&self.buffer, at, self.consumed)
    }
}

/// Where the first record of `kind` in `bytes` starts and ends, reading
/// whole records from the start; `None` while it has not arrived. A
/// script that holds a lock says so with a record, then waits: this finds
/// it in what arrived so far, and no field can pass for it.
pub fn find(bytes: &[u8], kind: &str) -> Result<Option<std::ops::Range<usize>>, ProtocolError> {
    let mut at = 0;
    loop {
        while bytes.get(at) == Some(&b'\n') {
            at += 1;
        }
        match record_at(bytes, at, 0)? {
            Some((record, next)) if record.kind == kind => return Ok(Some(at..next)),
            Some((_, next)) => at = next,
            None => return Ok(None),
        }
    }
}

/// The record starting at `at` of `bytes` (whose first byte is at
/// `consumed` in the stream), and where the next starts; `None` when it
/// has not arrived whole.
fn record_at(
    bytes: &[u8],
    at: usize,
    consumed: usize,
) -> Result<Option<(Record, usize)>, ProtocolError> {
    let Some(&first) = bytes.get(at) else {
        return Ok(None);
    };
    let position = consumed + at;
    if first != b'@' {
        let found = &bytes[at..bytes.len().min(at + 40)];
        return Err(ProtocolError::NotARecord {
            at: position,
            found: String::from_utf8_lossy(found).into_owned(),
        });
    }
    let mut fields = Fields { bytes, at: at + 1 };
    let Some(kind) = fields.next() else {
        return Ok(None);
    };
    let kind_is_valid = !kind.is_empty()
        && kind.len() <= 64
        && kind
            .iter()
            .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !kind_is_valid {
        return Err(ProtocolError::BadKind { at: position });
    }
    let Some(count) = fields.next() else {
        return Ok(None);
    };
    let count = std::str::from_utf8(count)
        .ok()
        .filter(|c| !c.is_empty() && c.len() <= 6 && c.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|c| c.parse::<usize>().ok())
        .filter(|&c| c <= MAX_FIELDS)
        .ok_or(ProtocolError::BadCount { at: position })?;
    let mut values = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        let Some(field) = fields.next() else {
            return Ok(None);
        };
        values.push(field.to_vec());
    }
    let record = Record {
        kind: String::from_utf8_lossy(kind).into_owned(),
        fields: values,
    };
    Ok(Some((record, fields.at)))
}

/// NUL-terminated fields of a buffer from a position.
struct Fields<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Iterator for Fields<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let rest = self.bytes.get(self.at..)?;
        let end = rest.iter().position(|&b| b == 0)?;
        self.at += end + 1;
        Some(&rest[..end])
    }
}

/// A record as the shell's `record` writes it. A field must not hold a NUL
/// (none from the shell can).
pub fn encode(kind: &str, fields: &[&[u8]]) -> Vec<u8> {
    debug_assert!(fields.iter().all(|f| !f.contains(&0)), "a NUL in a field");
    let mut out = format!("@{kind}\0{}\0", fields.len()).into_bytes();
    for field in fields {
        out.extend_from_slice(field);
        out.push(0);
    }
    out.push(b'\n');
    out
}

/// `encode` for text fields.
pub fn encode_text(kind: &str, fields: &[&str]) -> Vec<u8> {
    let fields: Vec<&[u8]> = fields.iter().map(|f| f.as_bytes()).collect();
    encode(kind, &fields)
}

#[cfg(test)]
mod tests;
