//! Reading input files: UTF-8 text (a byte-order mark is skipped), JSON with every error naming
//! the record and the field, and maps that refuse duplicate keys (JSON allows them; serde would
//! silently keep the last one, and the docs promise that nothing written is silently ignored).

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};

use crate::error::{Error, InputError, Result};

/// The largest fleet file gpuplace reads, bytes (a million racks with their occupancy fit in a few
/// tens of MiB).
pub const MAX_FLEET_BYTES: u64 = 256 << 20;
/// The largest policy file, bytes.
pub const MAX_POLICY_BYTES: u64 = 1 << 20;
/// The largest jobs file or trace, bytes: [`crate::model::jobs::MAX_JOBS`] jobs in pretty JSON fit.
pub const MAX_JOBS_BYTES: u64 = 4 << 30;

/// What an input file must start with, checked on its first bytes before the rest is read, so that
/// a device or a wrong file (`--jobs /dev/zero`) fails at once instead of after gigabytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expect {
    /// A JSON object (`{`).
    Object,
    /// A JSON object or array (`{` or `[`).
    ObjectOrArray,
    /// CSV text: a printable UTF-8 header line ending within the first MiB.
    Csv,
    /// Jobs in either format: JSON if it starts with `[` or `{`, else CSV.
    Jobs,
}

/// Reads a whole input file as UTF-8 text without a leading byte-order mark, naming it in errors:
/// see [`read_bytes`]; invalid UTF-8 is named by line.
pub(crate) fn read_input(path: &std::path::Path, limit: u64, expect: Expect) -> Result<String> {
    text_of(read_bytes(path, limit, expect)?, &path.display().to_string())
}

/// [`read_input`] from a reader (standard input), named `name` in errors.
pub(crate) fn read_input_from(reader: impl std::io::Read, name: &str, limit: u64, expect: Expect) -> Result<String> {
    text_of(read_bytes_from(reader, name, 0, limit, expect)?, name)
}

/// The bytes as UTF-8 text without a leading byte-order mark; invalid UTF-8 is named by line.
fn text_of(bytes: Vec<u8>, name: &str) -> Result<String> {
    let mut text = String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let valid = &e.as_bytes()[..at];
        let line = 1 + valid.iter().filter(|&&b| b == b'\n').count();
        InputError::new(name, format!("line {line}"), "(text)", format!("not valid UTF-8 at byte {at}"))
    })?;
    if text.starts_with('\u{FEFF}') {
        // In place: no second copy of a large file.
        text.drain(..'\u{FEFF}'.len_utf8());
    }
    Ok(text)
}

/// Reads a whole input file, naming it in errors: at most `limit` bytes (a larger file, or an
/// endless one, is refused with the limit named), and its beginning as `expect` says, checked on
/// the first bytes before the rest is read.
pub(crate) fn read_bytes(path: &std::path::Path, limit: u64, expect: Expect) -> Result<Vec<u8>> {
    let io = |source| Error::Io { path: path.into(), source };
    let file = std::fs::File::open(path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    read_bytes_from(file, &path.display().to_string(), size, limit, expect)
}

/// [`read_bytes`] from a reader of `size` bytes (0 when unknown), named `name` in errors.
pub(crate) fn read_bytes_from(
    source: impl std::io::Read,
    name: &str,
    size: u64,
    limit: u64,
    expect: Expect,
) -> Result<Vec<u8>> {
    use std::io::Read;
    const CHUNK: u64 = 1 << 20;
    let io = |source| Error::Io { path: name.into(), source };
    let too_large = || {
        InputError::new(
            name,
            "document",
            "(size)",
            format!("larger than {} MiB, the most gpuplace reads in a file of this kind", limit >> 20),
        )
    };
    let refuse = |message: String| -> Error { InputError::new(name, "document", "(top level)", message).into() };
    if size > limit {
        return Err(too_large().into());
    }
    let mut reader = std::io::BufReader::with_capacity(CHUNK as usize, source).take(limit + 1);
    // One allocation for a regular file; devices and pipes report no size.
    let mut bytes = Vec::with_capacity(size as usize);
    // Read until the file shows what it is: its first character that is not white space (JSON),
    // or its first line (CSV); a chunk at a time, so that a device that never ends is refused on
    // its first bytes.
    let mut ended = false;
    loop {
        let before = bytes.len();
        (&mut reader).take(CHUNK).read_to_end(&mut bytes).map_err(io)?;
        ended = ended || (bytes.len() as u64 - before as u64) < CHUNK;
        let start = bytes.strip_prefix("\u{FEFF}".as_bytes()).unwrap_or(&bytes);
        let first = start.iter().copied().find(|b| !b.is_ascii_whitespace());
        let json = match expect {
            Expect::Object | Expect::ObjectOrArray => true,
            Expect::Csv => false,
            // Jobs in either format: JSON starts with `[` or `{`, anything else must be CSV.
            Expect::Jobs => match first {
                Some(b'[' | b'{') => true,
                Some(_) => false,
                None if ended => break,
                None => continue,
            },
        };
        if json {
            let Some(first) = first else {
                if ended {
                    // Empty or white space only: the parser words that.
                    break;
                }
                continue;
            };
            let fits = match expect {
                Expect::Object => first == b'{',
                _ => matches!(first, b'{' | b'['),
            };
            if !fits {
                let expected = if expect == Expect::Object {
                    "a JSON object"
                } else {
                    "an array of jobs or an object {\"jobs\": [...]}"
                };
                let found = if first.is_ascii_graphic() {
                    format!("`{}`", first as char)
                } else {
                    format!("byte {first:#04x}")
                };
                return Err(refuse(format!("expected {expected}, found {found}")));
            }
        } else {
            let end = start.iter().position(|&b| b == b'\n' || b == b'\r');
            if end.is_none() && !ended {
                return Err(refuse("expected CSV text: no line ends within the first MiB".into()));
            }
            let header = &start[..end.unwrap_or(start.len())];
            let printable = std::str::from_utf8(header).is_ok_and(|h| !h.chars().any(|c| c.is_control() && c != '\t'));
            if !printable {
                return Err(refuse("expected CSV text: the header line is not printable UTF-8".into()));
            }
        }
        break;
    }
    reader.read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > limit {
        return Err(too_large().into());
    }
    Ok(bytes)
}

/// The text without a leading byte-order mark.
pub(crate) fn without_bom(text: &str) -> &str {
    text.strip_prefix('\u{FEFF}').unwrap_or(text)
}

/// The first character of the document that is not white space.
pub(crate) fn first_char(text: &str) -> Option<char> {
    without_bom(text).trim_start().chars().next()
}

/// Parses one JSON document that must be an object (and nothing after it) into `T`; errors name
/// the record and the field. `what` names the expected shape in the error for anything else.
pub(crate) fn parse_object<T: de::DeserializeOwned>(
    text: &str,
    source_name: &str,
    what: &str,
) -> Result<T, InputError> {
    match first_char(text) {
        Some('{') => parse_json(text, source_name),
        None => Err(InputError::new(source_name, "document", "(top level)", format!("empty file: expected {what}"))),
        Some(_) => Err(InputError::new(source_name, "document", "(top level)", format!("expected {what}"))),
    }
}

/// Parses one JSON document (and nothing after it) into `T`; errors name the record and field.
pub(crate) fn parse_json<T: de::DeserializeOwned>(text: &str, source_name: &str) -> Result<T, InputError> {
    let mut deserializer = serde_json::Deserializer::from_str(without_bom(text));
    let value: T = serde_path_to_error::deserialize(&mut deserializer).map_err(|err| json_error(source_name, err))?;
    deserializer
        .end()
        .map_err(|err| InputError::new(source_name, "document", "(top level)", format!("trailing data: {err}")))?;
    Ok(value)
}

/// Turns a `serde_path_to_error` failure of a JSON document into an [`InputError`] naming the record
/// and the field (see [`split_json_path`]).
fn json_error(source_name: &str, err: serde_path_to_error::Error<serde_json::Error>) -> InputError {
    let path = err.path().to_string();
    let inner = err.into_inner();
    let (record, field) = split_json_path(&path);
    let message = if inner.is_syntax() || inner.is_eof() {
        format!(
            "malformed JSON at line {} column {}: {}",
            inner.line(),
            inner.column(),
            strip_position(&inner.to_string())
        )
    } else {
        format!("{} (line {} column {})", strip_position(&inner.to_string()), inner.line(), inner.column())
    };
    InputError::new(source_name, record, field, message)
}

/// serde_json appends " at line L column C" to its messages; we report the position once, ourselves.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_string(),
        None => message.to_string(),
    }
}

/// Splits a serde path such as `jobs[3].gpus`, `[3].gpus` or `sites[0].clusters[1].racks` into a
/// record (`record 3` for a job, `sites[0]` otherwise) and a field (`gpus` / `clusters[1].racks`).
fn split_json_path(path: &str) -> (String, String) {
    if path == "." || path.is_empty() {
        return ("document".into(), "(top level)".into());
    }
    // The record is everything up to and including the first array index.
    if let Some(close) = path.find(']') {
        let record = &path[..=close];
        let rest = path[close + 1..].trim_start_matches('.');
        let field = if rest.is_empty() { "(record)" } else { rest };
        let index = record.strip_prefix("jobs[").or_else(|| record.strip_prefix('['));
        let record = match index {
            Some(index) => format!("record {}", index.trim_end_matches(']')),
            None => record.to_string(),
        };
        return (record, field.to_string());
    }
    ("document".into(), path.to_string())
}

/// `#[serde(deserialize_with = "unique_map")]`: a JSON object read into a map, refusing a key that
/// appears twice.
pub(crate) fn unique_map<'de, D, K, V>(deserializer: D) -> std::result::Result<BTreeMap<K, V>, D::Error>
where
    D: Deserializer<'de>,
    K: Deserialize<'de> + Ord + fmt::Display,
    V: Deserialize<'de>,
{
    struct UniqueMap<K, V>(PhantomData<(K, V)>);
    impl<'de, K, V> Visitor<'de> for UniqueMap<K, V>
    where
        K: Deserialize<'de> + Ord + fmt::Display,
        V: Deserialize<'de>,
    {
        type Value = BTreeMap<K, V>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON object")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some(key) = map.next_key::<K>()? {
                if out.contains_key(&key) {
                    return Err(de::Error::custom(format!("duplicate key `{key}`")));
                }
                let value = map.next_value()?;
                out.insert(key, value);
            }
            Ok(out)
        }
    }
    deserializer.deserialize_map(UniqueMap(PhantomData))
}

/// The version of every file format gpuplace writes (each JSON output has a `format_version` field)
/// and reads (an input may state it; a newer one is refused). It changes when a field changes
/// meaning or goes away, and when an input format (fleet, jobs, policy) gains a field, since the
/// readers of those formats refuse fields they do not know; an output-only format gains fields
/// without a change, so readers of outputs should ignore fields they do not know.
pub const FORMAT_VERSION: u32 = 1;

/// Checks an input's `format_version`: absent, or one this gpuplace reads (1 ..=
/// [`FORMAT_VERSION`]).
pub(crate) fn check_format_version(source_name: &str, version: Option<u32>) -> Result<(), InputError> {
    let newest = FORMAT_VERSION;
    match version {
        Some(v) if v == 0 || v > newest => Err(InputError::new(
            source_name,
            "document",
            "format_version",
            if v == 0 {
                format!("0 is not a version: versions start at 1 (this gpuplace reads 1 to {newest})")
            } else {
                format!("{v} is newer than this gpuplace reads (1 to {newest}); a newer gpuplace may read it")
            },
        )),
        _ => Ok(()),
    }
}

/// A value quoted in an error: escaped (one line) and, past 40 characters, cut short, so that a
/// huge bad value does not become a huge error.
pub(crate) fn shown(text: &str) -> String {
    let escaped: String = text.escape_debug().collect();
    if escaped.chars().count() <= 40 {
        return escaped;
    }
    let cut: String = escaped.chars().take(40).collect();
    format!("{cut}… ({} bytes)", text.len())
}

/// A number quoted in an error: in scientific notation when plain digits would be long.
pub(crate) fn shown_number(value: f64) -> String {
    if value != 0.0 && (value.abs() >= 1e15 || value.abs() < 1e-6) { format!("{value:e}") } else { format!("{value}") }
}

/// Checks a name written in a file (region, site, provider, jurisdiction, job id, …): not empty,
/// no leading or trailing white space (the CSV reader trims cells), no control character (errors
/// and tables are one line per record), and, where it can appear in a CSV list, no `|` (the list
/// separator). Returns what is wrong.
pub(crate) fn check_name(name: &str, in_csv_list: bool) -> std::result::Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.trim() != name {
        return Err(format!("`{}` has leading or trailing white space", shown(name)));
    }
    if name.chars().any(char::is_control) {
        return Err(format!("`{}` contains a control character", shown(name)));
    }
    if in_csv_list && name.contains('|') {
        return Err(format!("`{}` contains `|`, which separates list items in CSV files", shown(name)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Doc {
        #[serde(deserialize_with = "unique_map")]
        map: BTreeMap<String, u32>,
    }

    #[test]
    fn duplicate_keys_are_refused_and_named() {
        let err = parse_json::<Doc>(r#"{"map": {"a": 1, "b": 2, "a": 3}}"#, "f.json").unwrap_err();
        assert_eq!((err.record.as_str(), err.field.as_str()), ("document", "map"));
        assert!(err.message.contains("duplicate key `a`"), "{err}");
        let doc = parse_json::<Doc>("\u{FEFF}{\"map\": {\"a\": 1}}", "f.json").unwrap();
        assert_eq!(doc.map["a"], 1);
    }

    #[test]
    fn paths_name_records() {
        assert_eq!(split_json_path("jobs[3].gpus"), ("record 3".into(), "gpus".into()));
        assert_eq!(split_json_path("[7]"), ("record 7".into(), "(record)".into()));
        assert_eq!(split_json_path("sites[0].clusters[1].racks"), ("sites[0]".into(), "clusters[1].racks".into()));
    }

    #[test]
    fn names() {
        assert!(check_name("us-east", true).is_ok());
        assert!(check_name(" us", true).is_err());
        assert!(check_name("a|b", true).is_err());
        assert!(check_name("a|b", false).is_ok());
        assert!(check_name("a\nb", false).is_err());
        assert!(check_name("", false).is_err());
    }
}
