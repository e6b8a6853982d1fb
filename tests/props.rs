//! Property tests of everything that parses what a client sends: task bodies, list queries,
//! path ids, due dates and bearer headers. None may panic on any input, each accepts
//! exactly what the contract allows, and what it accepts satisfies the contract's bounds.
//! And of the one thing we write by hand that a client parses: a task's JSON.
//!
//! Each property runs 256 cases by default. A longer campaign:
//! `PROPTEST_CASES=100000 cargo test --release --test props` (add `-- --nocapture` to see
//! proptest's shrinking). Failures print the minimal input; nothing is written to disk.

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use serde_json::{Map, Value};
use todo_api::auth::{mint, Authenticator};
use todo_api::db::Task;
use todo_api::error::Error;
use todo_api::json;
use todo_api::tasks::{parse_id, ListQuery, NewTask, SortKey, StatusFilter, TaskPatch};
use todo_api::time::Micros;
use todo_api::Config;

/// The secret the authenticator under test shares with `mint`.
const SECRET: &str = "props-secret-0123456789abcdef";
/// API.md, Tasks: bounds in code points.
const TITLE_MAX: usize = 200;
const DESCRIPTION_MAX: usize = 1000;
/// The instants the API accepts: years 0001 through 9999 in UTC.
const MIN_MICROS: i64 = -62_135_596_800_000_000;
const MAX_MICROS: i64 = 253_402_300_799_999_999;

/// 256 cases unless `PROPTEST_CASES` says otherwise; no regression files in the tree.
fn config() -> ProptestConfig {
    ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Strings that reach the interesting branches: surrounding and inner white space
/// (Unicode's too), NUL, multi-byte code points, and any character at all.
fn text(max: usize) -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => "[a-zA-Z0-9]{1,8}",
        2 => Just(" ".to_string()),
        1 => Just("\t\n\r".to_string()),
        1 => Just("\u{00a0}\u{2003}\u{3000}".to_string()),
        1 => Just("\0".to_string()),
        2 => "[éü😀中]{1,4}",
        2 => any::<char>().prop_map(String::from),
    ];
    prop::collection::vec(piece, 0..max).prop_map(|parts| parts.concat())
}

/// A string of about `len` code points, for the length boundaries.
fn sized(len: std::ops::RangeInclusive<usize>) -> impl Strategy<Value = String> {
    (
        len,
        prop_oneof![Just("x"), Just("é"), Just("😀")],
        "[ \t]{0,3}",
    )
        .prop_map(|(n, unit, pad)| format!("{pad}{}{pad}", unit.repeat(n)))
}

/// One of these words.
fn words(words: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop::sample::select(words).prop_map(String::from)
}

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        text(6).prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,12}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A date that `Micros::parse` may or may not accept: well-formed or nearly so.
fn date_like() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9]{4}-[0-9]{2}-[0-9]{2}",
        "[0-9]{4}-[01][0-9]-[0-3][0-9][Tt ][0-2][0-9]:[0-5][0-9]:[0-6][0-9](\\.[0-9]{0,9})?([Zz]|[+-][0-2][0-9]:[0-6][0-9])?",
        (MIN_MICROS..=MAX_MICROS).prop_map(|m| Micros(m).to_rfc3339()),
        text(12),
    ]
}

/// What a field of a task body may hold: the right type, a near miss, or anything.
fn field(name: &'static str) -> BoxedStrategy<Value> {
    let specific: BoxedStrategy<Value> = match name {
        "title" => prop_oneof![
            text(12).prop_map(Value::String),
            sized(195..=205).prop_map(Value::String),
        ]
        .boxed(),
        "description" => prop_oneof![
            text(12).prop_map(Value::String),
            sized(995..=1005).prop_map(Value::String),
        ]
        .boxed(),
        "completed" => any::<bool>().prop_map(Value::Bool).boxed(),
        _ => date_like().prop_map(Value::String).boxed(),
    };
    prop_oneof![6 => specific, 1 => Just(Value::Null), 2 => json_value()].boxed()
}

/// A JSON object with any subset of the task fields, and maybe some unknown ones.
fn task_object() -> impl Strategy<Value = Map<String, Value>> {
    (
        prop::option::weighted(0.9, field("title")),
        prop::option::of(field("description")),
        prop::option::of(field("completed")),
        prop::option::of(field("due_date")),
        prop::collection::btree_map("[a-z]{1,8}", json_value(), 0..3),
    )
        .prop_map(|(title, description, completed, due_date, extra)| {
            let mut map: Map<String, Value> = extra
                .into_iter()
                .filter(|(k, _)| {
                    !["title", "description", "completed", "due_date"].contains(&k.as_str())
                })
                .collect();
            for (key, value) in [
                ("title", title),
                ("description", description),
                ("completed", completed),
                ("due_date", due_date),
            ] {
                if let Some(value) = value {
                    map.insert(key.to_string(), value);
                }
            }
            map
        })
}

/// Bytes that look like JSON: its punctuation, keywords and escapes, shuffled.
fn json_ish() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        Just("{"),
        Just("}"),
        Just("["),
        Just("]"),
        Just(":"),
        Just(","),
        Just("\""),
        Just("\"title\""),
        Just("\"description\""),
        Just("\"completed\""),
        Just("\"due_date\""),
        Just("null"),
        Just("true"),
        Just("false"),
        Just("-1e309"),
        Just("0"),
        Just("1.5"),
        Just("\\u0000"),
        Just("\\ud800"),
        Just("\\"),
        Just(" "),
        Just("x"),
        Just("\u{fffd}"),
    ];
    prop::collection::vec(token, 0..40).prop_map(|t| t.concat().into_bytes())
}

/// The contract's verdict on a title value (API.md, Tasks: Validation).
fn title_ok(v: &Value) -> bool {
    match v {
        Value::String(s) => {
            let n = s.trim().chars().count();
            !s.contains('\0') && (1..=TITLE_MAX).contains(&n)
        }
        _ => false,
    }
}

fn description_ok(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => !s.contains('\0') && s.chars().count() <= DESCRIPTION_MAX,
        _ => false,
    }
}

fn due_date_ok(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => !s.contains('\0') && Micros::parse(s).is_some(),
        _ => false,
    }
}

/// The invariants of an accepted title.
fn assert_title(title: &str) -> Result<(), TestCaseError> {
    prop_assert_eq!(title, title.trim(), "title not trimmed");
    prop_assert!(
        (1..=TITLE_MAX).contains(&title.chars().count()),
        "title length {}",
        title.chars().count()
    );
    prop_assert!(!title.contains('\0'), "NUL in title");
    Ok(())
}

fn assert_description(description: &str) -> Result<(), TestCaseError> {
    prop_assert!(description.chars().count() <= DESCRIPTION_MAX);
    prop_assert!(!description.contains('\0'), "NUL in description");
    Ok(())
}

/// The invariants of an accepted new task, and that it carries what the body said.
fn check_new_task(t: &NewTask, body: Option<&Map<String, Value>>) -> Result<(), TestCaseError> {
    assert_title(&t.title)?;
    if let Some(d) = &t.description {
        assert_description(d)?;
    }
    if let Some(map) = body {
        prop_assert_eq!(Some(t.title.as_str()), map["title"].as_str().map(str::trim));
        prop_assert_eq!(
            t.description.as_deref(),
            map.get("description").and_then(Value::as_str)
        );
        prop_assert_eq!(
            t.completed,
            map.get("completed")
                .and_then(Value::as_bool)
                .unwrap_or(false)
        );
        let due = map
            .get("due_date")
            .and_then(Value::as_str)
            .and_then(Micros::parse);
        prop_assert_eq!(t.due_date, due);
    }
    Ok(())
}

fn check_patch(p: &TaskPatch) -> Result<(), TestCaseError> {
    if let Some(title) = &p.title {
        assert_title(title)?;
    }
    if let Some(Some(d)) = &p.description {
        assert_description(d)?;
    }
    Ok(())
}

/// A 400 is the only refusal a body parser may give.
fn assert_bad_request<T: std::fmt::Debug>(r: &Result<T, Error>) -> Result<(), TestCaseError> {
    if let Err(e) = r {
        prop_assert!(matches!(e, Error::BadRequest { .. }), "not a 400: {e:?}");
        prop_assert_eq!(e.status(), 400);
    }
    Ok(())
}

/// Whatever the body, both parsers answer a value that keeps the invariants or a 400.
fn check_body(body: &[u8]) -> Result<(), TestCaseError> {
    let new = NewTask::parse(body);
    assert_bad_request(&new)?;
    if let Ok(t) = &new {
        check_new_task(t, None)?;
    }
    let patch = TaskPatch::parse(body);
    assert_bad_request(&patch)?;
    if let Ok(p) = &patch {
        check_patch(p)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn task_bodies_of_arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..512)) {
        check_body(&body)?;
    }

    #[test]
    fn task_bodies_of_json_ish_bytes_never_panic(body in json_ish()) {
        check_body(&body)?;
    }

    #[test]
    fn any_json_value_is_a_body_or_a_400(value in json_value()) {
        let body = serde_json::to_vec(&value).unwrap();
        let new = NewTask::parse(&body);
        assert_bad_request(&new)?;
        let patch = TaskPatch::parse(&body);
        assert_bad_request(&patch)?;
        if !value.is_object() {
            prop_assert!(new.is_err() && patch.is_err(), "a non-object was accepted: {value}");
        }
    }

    #[test]
    fn a_new_task_is_accepted_exactly_when_the_contract_allows(map in task_object()) {
        let body = serde_json::to_vec(&Value::Object(map.clone())).unwrap();
        let want = map.get("title").is_some_and(title_ok)
            && map.get("description").is_none_or(description_ok)
            && map.get("completed").is_none_or(Value::is_boolean)
            && map.get("due_date").is_none_or(due_date_ok);
        let got = NewTask::parse(&body);
        assert_bad_request(&got)?;
        prop_assert_eq!(got.is_ok(), want, "body {} gave {:?}", Value::Object(map.clone()), got);
        if let Ok(t) = &got {
            check_new_task(t, Some(&map))?;
        }
    }

    #[test]
    fn a_patch_is_accepted_exactly_when_the_contract_allows(map in task_object()) {
        let body = serde_json::to_vec(&Value::Object(map.clone())).unwrap();
        let want = map.get("title").is_none_or(title_ok)
            && map.get("description").is_none_or(description_ok)
            && map.get("completed").is_none_or(Value::is_boolean)
            && map.get("due_date").is_none_or(due_date_ok);
        let got = TaskPatch::parse(&body);
        assert_bad_request(&got)?;
        prop_assert_eq!(got.is_ok(), want, "body {} gave {:?}", Value::Object(map.clone()), got);
        if let Ok(p) = &got {
            check_patch(p)?;
            // Omitted stays None, null clears, a value is carried through.
            prop_assert_eq!(p.title.as_deref(), map.get("title").and_then(Value::as_str).map(str::trim));
            prop_assert_eq!(p.completed, map.get("completed").and_then(Value::as_bool));
            let description = map.get("description").map(|v| v.as_str().map(str::to_string));
            prop_assert_eq!(&p.description, &description);
            let due = map.get("due_date").map(|v| v.as_str().and_then(Micros::parse));
            prop_assert_eq!(p.due_date, due);
            prop_assert_eq!(p.is_empty(), !["title", "description", "completed", "due_date"].iter().any(|k| map.contains_key(*k)));
        }
    }

    #[test]
    fn list_queries_of_arbitrary_strings_never_panic(query in any::<String>()) {
        if let Err(e) = ListQuery::parse(&query) {
            prop_assert!(matches!(e, Error::BadRequest { .. }), "{e:?}");
        }
    }

    #[test]
    fn list_queries_accept_exactly_the_valid_values(
        pairs in prop::collection::vec(
            (
                prop_oneof![words(&["status", "sort", "order", "page"]), "[a-z]{1,6}"],
                prop_oneof![
                    words(&[
                        "all", "pending", "completed", "created", "title", "due_date", "asc",
                        "desc", "", "ALL", "Asc",
                    ]),
                    "[a-z_]{0,10}",
                ],
                any::<bool>(),
            ),
            0..6,
        )
    ) {
        let query = pairs
            .iter()
            .map(|(k, v, bare)| if *bare && v.is_empty() { k.to_string() } else { format!("{k}={v}") })
            .collect::<Vec<_>>()
            .join("&");
        // The last occurrence of a key wins.
        let last: BTreeMap<&str, &str> = pairs.iter().map(|(k, v, _)| (k.as_ref(), v.as_ref())).collect();
        let status = match last.get("status").copied() {
            None | Some("all") => Some(StatusFilter::All),
            Some("pending") => Some(StatusFilter::Pending),
            Some("completed") => Some(StatusFilter::Completed),
            Some(_) => None,
        };
        let sort = match last.get("sort").copied() {
            None | Some("created") => Some(SortKey::Created),
            Some("title") => Some(SortKey::Title),
            Some("due_date") => Some(SortKey::DueDate),
            Some(_) => None,
        };
        let descending = match (last.get("order").copied(), sort) {
            (None, Some(s)) => Some(s == SortKey::Created),
            (Some("asc"), _) => Some(false),
            (Some("desc"), _) => Some(true),
            _ => None,
        };
        let got = ListQuery::parse(&query);
        match (status, sort, descending) {
            (Some(status), Some(sort), Some(descending)) => {
                prop_assert_eq!(got.ok(), Some(ListQuery { status, sort, descending }), "{}", query);
            }
            _ => prop_assert!(matches!(got, Err(Error::BadRequest { .. })), "{query:?} gave {got:?}"),
        }
    }

    #[test]
    fn percent_encoded_query_values_mean_the_same(
        key in prop_oneof![Just("status"), Just("sort"), Just("order")],
        pick in 0usize..3,
        mask in prop::collection::vec(any::<bool>(), 10),
    ) {
        let value = match key {
            "status" => ["all", "pending", "completed"][pick],
            "sort" => ["created", "title", "due_date"][pick],
            _ => ["asc", "desc", "asc"][pick],
        };
        let encoded: String = value
            .bytes()
            .zip(mask.iter().cycle())
            .map(|(b, &enc)| if enc { format!("%{b:02X}") } else { (b as char).to_string() })
            .collect();
        let plain = ListQuery::parse(&format!("{key}={value}"));
        prop_assert!(plain.is_ok());
        prop_assert_eq!(ListQuery::parse(&format!("{key}={encoded}")).ok(), plain.ok());
    }

    #[test]
    fn ids_are_integers_or_400_and_too_large_is_404(
        raw in prop_oneof![
            any::<String>(),
            "-?[0-9]{1,25}",
            "[-+ ]?[0-9a-f.e]{0,6}",
            any::<i64>().prop_map(|n| n.to_string()),
        ]
    ) {
        let digits = raw.strip_prefix('-').unwrap_or(&raw);
        let well_formed = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
        match (parse_id(&raw), raw.parse::<i64>()) {
            (Ok(id), Ok(want)) => prop_assert!(well_formed && id == want, "{raw:?} -> {id}"),
            (Err(Error::NotFound(_)), Err(_)) => prop_assert!(well_formed, "{raw:?}: 404 for a non-integer"),
            (Err(Error::BadRequest { .. }), _) => prop_assert!(!well_formed, "{raw:?}: 400 for an integer"),
            (got, want) => prop_assert!(false, "{raw:?}: got {got:?}, i64 parse {want:?}"),
        }
    }

    #[test]
    fn dates_never_panic_and_what_they_accept_prints_and_parses_back(s in date_like()) {
        if let Some(m) = Micros::parse(&s) {
            prop_assert!((MIN_MICROS..=MAX_MICROS).contains(&m.0), "{s:?} -> {m:?} out of range");
            let printed = m.to_rfc3339();
            prop_assert_eq!(printed.len(), "2026-01-02T10:00:00.123456Z".len());
            prop_assert_eq!(Micros::parse(&printed), Some(m), "{} from {:?}", printed, s);
        }
    }

    #[test]
    fn dates_of_arbitrary_strings_never_panic(s in any::<String>()) {
        let _ = Micros::parse(&s);
    }

    #[test]
    fn every_printed_instant_parses_back_in_every_spelling(
        m in MIN_MICROS..=MAX_MICROS,
        offset_minutes in -(23 * 60 + 59)..=(23 * 60 + 59i64),
        extra_digits in "[0-9]{0,3}",
    ) {
        let printed = Micros(m).to_rfc3339();
        prop_assert_eq!(Micros::parse(&printed), Some(Micros(m)), "{}", printed);
        let stem = printed.strip_suffix('Z').unwrap();
        // Lower-case separators, more fraction digits (cut, not rounded). A space for the
        // T is refused, as JSON Schema's date-time refuses it.
        prop_assert_eq!(Micros::parse(&format!("{} {}Z", &stem[..10], &stem[11..])), None);
        let variants = [
            format!("{}t{}z", &stem[..10], &stem[11..]),
            format!("{stem}{extra_digits}Z"),
            format!("{stem}+00:00"),
            format!("{stem}-00:00"),
        ];
        for v in &variants {
            prop_assert_eq!(Micros::parse(v), Some(Micros(m)), "{}", v);
        }
        // The same instant as local time at an offset.
        let local = m + offset_minutes * 60_000_000;
        if (MIN_MICROS..=MAX_MICROS).contains(&local) {
            let sign = if offset_minutes < 0 { '-' } else { '+' };
            let abs = offset_minutes.abs();
            let local = Micros(local).to_rfc3339();
            let spelled = format!("{}{sign}{:02}:{:02}", local.strip_suffix('Z').unwrap(), abs / 60, abs % 60);
            prop_assert_eq!(Micros::parse(&spelled), Some(Micros(m)), "{}", spelled);
        }
        // A date-time without an offset names no instant.
        prop_assert_eq!(Micros::parse(stem), None, "{}", stem);
    }

    #[test]
    fn strings_written_by_hand_are_what_serde_json_writes(s in prop_oneof![text(40), any::<String>()]) {
        let mut out = Vec::new();
        json::string(&mut out, &s);
        prop_assert_eq!(String::from_utf8(out).unwrap(), serde_json::to_string(&s).unwrap());
    }

    #[test]
    fn a_task_written_by_hand_reads_back_as_the_same_task(
        id in any::<i64>(),
        title in prop_oneof![text(40), any::<String>()],
        description in prop::option::of(text(40)),
        completed in any::<bool>(),
        stamps in prop::array::uniform3(MIN_MICROS - 1_000_000..=MAX_MICROS + 1_000_000),
        due in any::<bool>(),
    ) {
        let task = Task {
            id,
            title,
            description,
            completed,
            due_date: due.then_some(Micros(stamps[0])),
            created_at: Micros(stamps[1]),
            updated_at: Micros(stamps[2]),
        };
        let mut out = Vec::new();
        json::task(&mut out, &task);
        let read: Value = serde_json::from_slice(&out).expect("valid JSON");
        let expected = serde_json::json!({
            "id": task.id,
            "title": task.title,
            "description": task.description,
            "completed": task.completed,
            "due_date": task.due_date.map(Micros::to_rfc3339),
            "created_at": task.created_at.to_rfc3339(),
            "updated_at": task.updated_at.to_rfc3339(),
        });
        prop_assert_eq!(read, expected);
    }

    #[test]
    fn bearer_headers_of_arbitrary_strings_never_authenticate(
        header in prop_oneof![
            any::<String>(),
            any::<String>().prop_map(|t| format!("Bearer {t}")),
            "[A-Za-z0-9_-]{0,40}\\.[A-Za-z0-9_-]{0,80}\\.[A-Za-z0-9_-]{0,43}".prop_map(|t| format!("Bearer {t}")),
            json_value().prop_map(|v| format!("Bearer {}.{}.c2ln", b64(br#"{"alg":"HS256","typ":"JWT"}"#), b64(v.to_string().as_bytes()))),
        ]
    ) {
        let got = authenticator().authenticate(Some(&header));
        prop_assert!(
            matches!(got, Err(Error::MissingToken | Error::InvalidToken(_))),
            "{header:?} gave {got:?}"
        );
    }

    #[test]
    fn tokens_minted_with_the_secret_are_accepted_when_their_sub_is_valid(
        sub in prop_oneof![text(8), sized(250..=260)],
        scheme in prop_oneof![Just("Bearer"), Just("bearer"), Just("BEARER")],
        pad in "[ \t]{0,2}",
    ) {
        let token = mint(SECRET.as_bytes(), &sub, None, None, Duration::from_secs(600));
        let got = authenticator().authenticate(Some(&format!("{pad}{scheme} {token}{pad}")));
        let valid = !sub.is_empty() && !sub.contains('\0') && sub.chars().count() <= 255;
        match got {
            Ok(user) => prop_assert!(valid && user.id == sub, "{sub:?} accepted as {:?}", user.id),
            Err(Error::InvalidToken(_)) => prop_assert!(!valid, "a valid sub {sub:?} was refused"),
            Err(e) => prop_assert!(false, "{sub:?}: {e:?}"),
        }
    }

    #[test]
    fn tokens_minted_with_another_secret_or_altered_are_refused(
        other in "[ -~]{12,40}",
        position in any::<prop::sample::Index>(),
        replacement in "[A-Za-z0-9_-]",
    ) {
        let auth = authenticator();
        if other != SECRET {
            let foreign = mint(other.as_bytes(), "alice", None, None, Duration::from_secs(600));
            let header = format!("Bearer {foreign}");
            let got = auth.authenticate(Some(&header));
            prop_assert!(matches!(got, Err(Error::InvalidToken(_))), "{:?}", got);
        }
        // One character changed anywhere but the last of a part (whose low bits base64url
        // may ignore) makes a different token, which must fail.
        let token = mint(SECRET.as_bytes(), "alice", None, None, Duration::from_secs(600));
        let bytes = token.as_bytes();
        let candidates: Vec<usize> = (0..bytes.len())
            .filter(|&i| bytes[i] != b'.' && bytes.get(i + 1).is_some_and(|&n| n != b'.'))
            .collect();
        let i = candidates[position.index(candidates.len())];
        let replacement = replacement.as_bytes()[0];
        if bytes[i] != replacement {
            let mut altered = bytes.to_vec();
            altered[i] = replacement;
            let altered = String::from_utf8(altered).unwrap();
            let got = auth.authenticate(Some(&format!("Bearer {altered}")));
            prop_assert!(matches!(got, Err(Error::InvalidToken(_))), "{altered} gave {got:?}");
        }
    }
}

/// An authenticator as the server builds it; its JWKS location refuses connections at
/// once, so a token that asks for a JWKS key costs no waiting and no outside traffic.
fn authenticator() -> Authenticator {
    let config = Config::from_lookup(|key| match key {
        "BETTER_AUTH_SECRET" => Some(SECRET.to_string()),
        "JWKS_URL" => Some("http://127.0.0.1:1/api/auth/jwks".to_string()),
        _ => None,
    })
    .expect("config");
    Authenticator::new(&config)
}

/// Unpadded base64url, as JWTs use.
fn b64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n =
            chunk.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}
