//! The JSON of a task, written by hand: every task route's response body. serde_json's
//! generic serializer spent ~1,400 instructions a task (each constant key escaped byte by
//! byte, a `Serializer` call per field); here the keys are constants and a string is copied
//! whole unless it holds a byte that needs escaping. The output is what serde_json writes.

use crate::db::Task;
use crate::time::Micros;

/// Appends `task` as a JSON object, keys in the contract's order (API.md, Tasks).
pub fn task<S: AsRef<str>>(out: &mut Vec<u8>, task: &Task<S>) {
    out.extend_from_slice(b"{\"id\":");
    int(out, task.id);
    out.extend_from_slice(b",\"title\":");
    string(out, task.title.as_ref());
    out.extend_from_slice(b",\"description\":");
    match &task.description {
        Some(d) => string(out, d.as_ref()),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(if task.completed {
        b",\"completed\":true,\"due_date\":"
    } else {
        b",\"completed\":false,\"due_date\":"
    });
    match task.due_date {
        Some(due) => timestamp(out, due),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"created_at\":");
    timestamp(out, task.created_at);
    out.extend_from_slice(b",\"updated_at\":");
    timestamp(out, task.updated_at);
    out.push(b'}');
}

/// Appends `s` as a JSON string, escaped as serde_json escapes it: `"` and `\`, the control
/// characters as `\n`, `\r`, `\t`, `\b`, `\f` or `\u00XX`; everything else as it is.
///
/// Eight bytes at a time are checked for one that needs escaping (`plain8`), and runs without
/// one are copied whole (the byte-by-byte look is only for eight that hold one): a list of 50 tasks has some 100 strings, and the check byte by byte
/// was a sixth of the list's instructions (callgrind, bench/README.md).
pub fn string(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut plain = 0;
    let mut at = 0;
    while at < bytes.len() {
        let end = (at + 8).min(bytes.len());
        // The last few bytes are checked as the string's last eight (the ones before them
        // were seen already; if one of those needs escaping, these go byte by byte).
        let window = end.saturating_sub(8);
        if let Ok(chunk) = <[u8; 8]>::try_from(&bytes[window..end]) {
            if plain8(u64::from_le_bytes(chunk)) {
                at = end;
                continue;
            }
        }
        for i in at..end {
            if let Some(escape) = escaped(bytes[i]) {
                out.extend_from_slice(&bytes[plain..i]);
                out.extend_from_slice(&escape.0[..escape.1]);
                plain = i + 1;
            }
        }
        at = end;
    }
    out.extend_from_slice(&bytes[plain..]);
    out.push(b'"');
}

/// Whether none of eight bytes is `"`, `\` or a control character (below 0x20). Each test is
/// the classic "has a zero byte" bit trick, exact as to whether any byte matches.
fn plain8(x: u64) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    let below = |v: u64, n: u8| v.wrapping_sub(ONES * u64::from(n)) & !v & HIGHS;
    let zero = |v: u64| below(v, 1);
    below(x, 0x20) | zero(x ^ (ONES * u64::from(b'"'))) | zero(x ^ (ONES * u64::from(b'\\'))) == 0
}

/// The escape of one byte (its bytes and their number), if it needs one.
fn escaped(b: u8) -> Option<([u8; 6], usize)> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let two = |c: u8| Some(([b'\\', c, 0, 0, 0, 0], 2));
    match b {
        b'"' => two(b'"'),
        b'\\' => two(b'\\'),
        b'\n' => two(b'n'),
        b'\r' => two(b'r'),
        b'\t' => two(b't'),
        0x08 => two(b'b'),
        0x0c => two(b'f'),
        0..=0x1f => Some((
            [
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ],
            6,
        )),
        _ => None,
    }
}

fn int(out: &mut Vec<u8>, v: i64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut n = v.unsigned_abs();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&digits[at..]);
}

fn timestamp(out: &mut Vec<u8>, t: Micros) {
    out.push(b'"');
    match t.rfc3339_bytes() {
        Some(bytes) => out.extend_from_slice(&bytes),
        None => out.extend_from_slice(t.to_rfc3339().as_bytes()),
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn written<S: AsRef<str>>(t: &Task<S>) -> String {
        let mut out = Vec::new();
        task(&mut out, t);
        String::from_utf8(out).expect("UTF-8")
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        let mut every_control: String = (0u8..0x20).map(char::from).collect();
        every_control.push_str("\"\\/\u{7f}é€😀 plain");
        for s in ["", "plain", "a\"b", "\\", "line\nbreak\r\n", &every_control] {
            let mut out = Vec::new();
            string(&mut out, s);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                serde_json::to_string(s).unwrap(),
                "{s:?}"
            );
        }
    }

    #[test]
    fn a_byte_to_escape_is_found_at_every_place_of_a_string() {
        let specials = (0u8..0x20)
            .map(char::from)
            .chain(['"', '\\', ' ', '!', '#', '[', ']', '\u{7f}', 'é', '€', '😀']);
        for special in specials {
            for len in 1..=19 {
                for at in 0..len {
                    let s: String = (0..len)
                        .map(|i| if i == at { special } else { 'a' })
                        .collect();
                    let mut out = Vec::new();
                    string(&mut out, &s);
                    assert_eq!(
                        String::from_utf8(out).unwrap(),
                        serde_json::to_string(&s).unwrap(),
                        "{s:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn eight_bytes_are_plain_exactly_when_none_needs_escaping() {
        let naive = |x: u64| {
            x.to_le_bytes()
                .iter()
                .all(|&b| b >= 0x20 && b != b'"' && b != b'\\')
        };
        // Bytes around each boundary, in every combination of two places, over a plain base.
        let edges = [
            0x00, 0x01, 0x1f, 0x20, 0x21, 0x22, 0x23, 0x5b, 0x5c, 0x5d, 0x7f, 0x80, 0x9f, 0xa0,
            0xa2, 0xdc, 0xff,
        ];
        for base in [0x61u8, 0x20, 0xff, 0x80, 0x23] {
            for (i, j) in (0..8).flat_map(|i| (0..8).map(move |j| (i, j))) {
                for (&a, &b) in edges.iter().flat_map(|a| edges.iter().map(move |b| (a, b))) {
                    let mut bytes = [base; 8];
                    bytes[i] = a;
                    bytes[j] = b;
                    let x = u64::from_le_bytes(bytes);
                    assert_eq!(plain8(x), naive(x), "{bytes:02x?}");
                }
            }
        }
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            assert_eq!(plain8(x), naive(x), "{x:016x}");
        }
    }

    #[test]
    fn a_task_is_the_object_of_the_contract() {
        let t = Task {
            id: -9_223_372_036_854_775_808,
            title: "Buy \"milk\"".to_string(),
            description: None,
            completed: true,
            due_date: Some(Micros(0)),
            created_at: Micros(1_767_348_000_123_456),
            updated_at: Micros(253_402_300_800_000_000),
        };
        let text = written(&t);
        let at: Vec<usize> = [
            "id",
            "title",
            "description",
            "completed",
            "due_date",
            "created_at",
            "updated_at",
        ]
        .iter()
        .map(|k| text.find(&format!("\"{k}\":")).expect(k))
        .collect();
        assert!(at.is_sorted(), "keys out of the contract's order: {text}");
        let parsed: Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(
            parsed,
            json!({
                "id": -9_223_372_036_854_775_808_i64,
                "title": "Buy \"milk\"",
                "description": null,
                "completed": true,
                "due_date": "1970-01-01T00:00:00.000000Z",
                "created_at": "2026-01-02T10:00:00.123456Z",
                "updated_at": "10000-01-01T00:00:00.000000Z",
            })
        );
        let borrowed = Task {
            id: 0,
            title: "t",
            description: Some("line\n"),
            completed: false,
            due_date: None,
            created_at: Micros(-1),
            updated_at: Micros(-1),
        };
        assert_eq!(
            written(&borrowed),
            "{\"id\":0,\"title\":\"t\",\"description\":\"line\\n\",\"completed\":false,\
             \"due_date\":null,\"created_at\":\"1969-12-31T23:59:59.999999Z\",\
             \"updated_at\":\"1969-12-31T23:59:59.999999Z\"}"
        );
    }

    #[test]
    fn integers_of_every_length() {
        for v in [0, 7, -7, 10, 99, 100, 1_234_567_890, i64::MAX, i64::MIN] {
            let mut out = Vec::new();
            int(&mut out, v);
            assert_eq!(String::from_utf8(out).unwrap(), v.to_string());
        }
    }
}
