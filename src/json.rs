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
pub fn string(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    out.push(b'"');
    let mut plain = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..=0x1f => &[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ],
            _ => continue,
        };
        out.extend_from_slice(&bytes[plain..i]);
        out.extend_from_slice(escape);
        plain = i + 1;
    }
    out.extend_from_slice(&bytes[plain..]);
    out.push(b'"');
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
