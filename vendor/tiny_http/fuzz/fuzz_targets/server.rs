//! Fuzzes tiny_http's request-head parsing and framing end to end: one `tiny_http::Server`
//! on 127.0.0.1:0 per process, with a direct handler (the todo-api set-up) that records each
//! request it is handed, reads its body and answers 200. Each input is written to a fresh
//! connection, the write side half-closed, and everything the server sends read back
//! (deadline 3 s). The answers and the requests handed over are compared with a reference
//! model of RFC 9112 plus the limits and refusals documented in PATCHES.md.
//!
//! Input macros (to reach the 8 KiB / 16 KiB / 100-line / 64 KiB limits with small inputs):
//!   `\xff\xfc N B` -> byte B repeated N*128 times
//!   `\xff\xfe N L` -> the L bytes before it repeated N more times
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

mod ref_chunked;
use ref_chunked::{is_tchar, Outcome};

#[derive(Debug, Clone, PartialEq)]
struct Seen {
    method: String,
    url: String,
    version: (u8, u8),
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    last: bool,
}

struct Fixture {
    addr: SocketAddr,
    server: Arc<tiny_http::Server>,
    log: Arc<Mutex<HashMap<u16, Vec<Seen>>>>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let log: Arc<Mutex<HashMap<u16, Vec<Seen>>>> = Arc::default();
        let log2 = log.clone();
        let handler: tiny_http::DirectHandler = Arc::new(move |mut rq: tiny_http::Request| {
            let mut body = Vec::new();
            let _ = rq.as_reader().read_to_end(&mut body);
            let port = rq.remote_addr().map(|a| a.port()).unwrap_or(0);
            let seen = Seen {
                method: rq.method().as_str().to_string(),
                url: rq.url().to_string(),
                version: (rq.http_version().0, rq.http_version().1),
                headers: rq
                    .headers()
                    .iter()
                    .map(|h| (h.field.as_str().as_str().to_string(), h.value.as_str().to_string()))
                    .collect(),
                body,
                last: rq.is_last_on_connection(),
            };
            let n = {
                let mut l = log2.lock().unwrap();
                let v = l.entry(port).or_default();
                v.push(seen);
                v.len()
            };
            let _ = rq.respond(
                tiny_http::Response::from_string(format!("seq={n}")).with_status_code(200),
            );
            None
        });
        let server = tiny_http::Server::from_listener_with(listener, None, Some(handler)).unwrap();
        Fixture { addr, server: Arc::new(server), log }
    })
}

fn expand(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] == 0xff && i + 3 < input.len() && input[i + 1] == 0xfc {
            let n = input[i + 2] as usize * 128;
            out.extend(std::iter::repeat(input[i + 3]).take(n));
            i += 4;
        } else if input[i] == 0xff && i + 3 < input.len() && input[i + 1] == 0xfe {
            let n = input[i + 2] as usize;
            let l = (input[i + 3] as usize).min(out.len());
            let seg = out[out.len() - l..].to_vec();
            for _ in 0..n {
                out.extend_from_slice(&seg);
            }
            i += 4;
        } else {
            out.push(input[i]);
            i += 1;
        }
        if out.len() > 300_000 {
            out.truncate(300_000);
            break;
        }
    }
    out
}

// ------------------------------------------------------------------------------------------
// Reference model

#[derive(Debug, Clone, PartialEq)]
enum End {
    /// The connection ends with no further answer.
    Silent,
    /// An answer tiny_http writes itself (one of these statuses), then the end.
    Answer(Vec<u16>),
    /// Either (the outcome depends on how reads split the stream).
    Either(Vec<u16>),
}

#[derive(Debug)]
struct Expected {
    requests: Vec<Seen>,
    end: End,
    /// HEAD / version of the request the early answer refers to, if known.
    end_head: bool,
    end_version: (u8, u8),
    /// byte offset in the input where each request starts, for messages
    starts: Vec<usize>,
}

enum LineR {
    Line(Vec<u8>),
    Err(End),
}

/// tiny_http's line reading as documented: CRLF ends it; bare LF or CR+other is refused; a
/// line longer than `max` is refused with `too_long`.
fn ref_line(d: &[u8], pos: &mut usize, max: usize, bad: u16, too_long: u16) -> LineR {
    let start = *pos;
    let rest = &d[start..];
    match rest.iter().position(|&b| b == b'\r' || b == b'\n') {
        None => {
            if rest.len() > max {
                LineR::Err(End::Answer(vec![too_long]))
            } else {
                LineR::Err(End::Silent)
            }
        }
        Some(i) => {
            let crlf = rest[i] == b'\r' && rest.get(i + 1) == Some(&b'\n');
            let cr_eof = rest[i] == b'\r' && rest.get(i + 1).is_none();
            if i > max {
                if crlf || cr_eof {
                    LineR::Err(End::Answer(vec![too_long]))
                } else {
                    LineR::Err(End::Answer(vec![bad, too_long]))
                }
            } else if crlf {
                *pos = start + i + 2;
                LineR::Line(rest[..i].to_vec())
            } else if cr_eof {
                LineR::Err(End::Silent)
            } else {
                LineR::Err(End::Answer(vec![bad]))
            }
        }
    }
}

fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

fn is_unreserved_or_sub(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~".contains(&b) || b"!$&'()*+,;=".contains(&b)
}

fn is_dec_octet(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 3
        && s.bytes().all(|b| b.is_ascii_digit())
        && (s.len() == 1 || !s.starts_with('0'))
        && s.parse::<u16>().unwrap() <= 255
}

fn is_ipv4(s: &str) -> bool {
    let p: Vec<&str> = s.split('.').collect();
    p.len() == 4 && p.iter().all(|x| is_dec_octet(x))
}

fn is_h16(s: &str) -> bool {
    (1..=4).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// RFC 3986 IPv6address, written from the ABNF's meaning: eight 16-bit pieces, the last two
/// of which may be an IPv4address, with at most one "::" standing for one or more zero pieces.
fn is_ipv6(s: &str) -> bool {
    fn units(part: &str, last: bool) -> Option<usize> {
        if part.is_empty() {
            return Some(0);
        }
        let pieces: Vec<&str> = part.split(':').collect();
        let mut n = 0;
        for (i, p) in pieces.iter().enumerate() {
            if last && i == pieces.len() - 1 && p.contains('.') {
                if !is_ipv4(p) {
                    return None;
                }
                n += 2;
            } else if is_h16(p) {
                n += 1;
            } else {
                return None;
            }
        }
        Some(n)
    }
    match s.find("::") {
        Some(at) => {
            let (a, b) = (&s[..at], &s[at + 2..]);
            if b.contains("::") {
                return false;
            }
            match (units(a, false), units(b, true)) {
                (Some(x), Some(y)) => x + y <= 7,
                _ => false,
            }
        }
        None => units(s, true) == Some(8),
    }
}

fn ref_is_host(v: &str) -> bool {
    let (host, rest) = if v.starts_with('[') {
        match v.find(']') {
            Some(i) => (&v[..=i], &v[i + 1..]),
            None => return false,
        }
    } else {
        match v.find(':') {
            Some(i) => (&v[..i], &v[i..]),
            None => (v, ""),
        }
    };
    let port_ok = rest.is_empty()
        || (rest.starts_with(':') && rest[1..].bytes().all(|b| b.is_ascii_digit()));
    if !port_ok {
        return false;
    }
    if let Some(lit) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        if let Some(f) = lit.strip_prefix('v').or_else(|| lit.strip_prefix('V')) {
            let Some((ver, addr)) = f.split_once('.') else { return false };
            return !ver.is_empty()
                && ver.bytes().all(|b| b.is_ascii_hexdigit())
                && !addr.is_empty()
                && addr.bytes().all(|b| b == b':' || is_unreserved_or_sub(b));
        }
        return is_ipv6(lit);
    }
    // reg-name = *( unreserved / pct-encoded / sub-delims )
    let b = host.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if i + 2 < b.len() + 0 && b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit() {
                i += 3;
                continue;
            }
            return false;
        }
        if !is_unreserved_or_sub(b[i]) {
            return false;
        }
        i += 1;
    }
    true
}

fn reference(d: &[u8]) -> Expected {
    let mut exp = Expected {
        requests: vec![],
        end: End::Silent,
        end_head: false,
        end_version: (1, 1),
        starts: vec![],
    };
    let mut pos = 0;
    macro_rules! end {
        ($e:expr) => {{
            exp.end = $e;
            return exp;
        }};
    }
    loop {
        exp.end_head = false;
        exp.end_version = (1, 1);
        exp.starts.push(pos);
        // request line, up to four empty lines skipped
        let mut skipped = 0;
        let line = loop {
            match ref_line(d, &mut pos, 8 * 1024, 400, 414) {
                LineR::Err(e) => end!(e),
                LineR::Line(l) if l.is_empty() && skipped < 4 => skipped += 1,
                LineR::Line(l) => break l,
            }
        };
        if !line.is_ascii() {
            end!(End::Answer(vec![400]));
        }
        let parts: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
        if parts.len() != 3
            || !is_token(parts[0])
            || parts[1].is_empty()
            || !parts[1].iter().all(|&b| (0x21..=0x7e).contains(&b))
        {
            end!(End::Answer(vec![400]));
        }
        let v = parts[2];
        if !(v.len() == 8
            && v.starts_with(b"HTTP/")
            && v[5].is_ascii_digit()
            && v[6] == b'.'
            && v[7].is_ascii_digit())
        {
            end!(End::Answer(vec![400]));
        }
        let mut version = (v[5] - b'0', v[7] - b'0');
        if version.0 == 1 && version.1 >= 2 {
            version = (1, 1);
        }
        let method = String::from_utf8(parts[0].to_vec()).unwrap();
        let url = String::from_utf8(parts[1].to_vec()).unwrap();
        exp.end_head = method == "HEAD";
        let supported = version == (1, 0) || version == (1, 1);
        exp.end_version = if supported { version } else { (1, 1) };

        // header lines
        let mut headers: Vec<(String, String)> = vec![];
        let mut total = 0;
        loop {
            let mut l = match ref_line(d, &mut pos, 16 * 1024, 400, 431) {
                LineR::Err(e) => end!(e),
                LineR::Line(l) => l,
            };
            if l.is_empty() {
                break;
            }
            total += l.len();
            if total > 16 * 1024 || headers.len() >= 100 {
                end!(End::Answer(vec![431]));
            }
            for b in l.iter_mut() {
                if *b >= 0x80 {
                    *b = b'?';
                }
            }
            let Some(colon) = l.iter().position(|&b| b == b':') else {
                end!(End::Answer(vec![400]));
            };
            let name = &l[..colon];
            let mut value = &l[colon + 1..];
            while let [b' ' | b'\t', rest @ ..] = value {
                value = rest;
            }
            while let [rest @ .., b' ' | b'\t'] = value {
                value = rest;
            }
            if !is_token(name) || !value.iter().all(|&b| b == b'\t' || (0x20..0x7f).contains(&b)) {
                end!(End::Answer(vec![400]));
            }
            headers.push((
                String::from_utf8(name.to_vec()).unwrap(),
                String::from_utf8(value.to_vec()).unwrap(),
            ));
        }
        if !supported {
            end!(End::Answer(vec![505]));
        }
        let named = |n: &str| -> Vec<&str> {
            headers
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case(n))
                .map(|(_, v)| v.as_str())
                .collect()
        };
        let hosts = named("Host");
        let host_ok = match hosts.len() {
            0 => version == (1, 0),
            1 => ref_is_host(hosts[0]),
            _ => false,
        };
        if !host_ok {
            end!(End::Answer(vec![400]));
        }
        // framing
        let cls = named("Content-Length");
        let tes = named("Transfer-Encoding");
        let bad_cl = cls.len() > 1
            || cls.iter().any(|c| {
                c.is_empty() || !c.bytes().all(|b| b.is_ascii_digit()) || c.parse::<usize>().is_err()
            });
        let bad_te = tes.len() > 1
            || tes.iter().any(|t| !t.eq_ignore_ascii_case("chunked"))
            || (!tes.is_empty() && version == (1, 0));
        if bad_cl || bad_te || (!cls.is_empty() && !tes.is_empty()) {
            end!(End::Answer(vec![400]));
        }
        if let Some(e) = named("Expect").first() {
            if !e.eq_ignore_ascii_case("100-continue") {
                end!(End::Answer(vec![417]));
            }
        }
        let mut cut = false;
        let body = if let Some(cl) = cls.first() {
            let n: usize = cl.parse().unwrap();
            if n <= 64 * 1024 {
                if d.len() - pos < n {
                    end!(End::Silent);
                }
                pos += n;
                d[pos - n..pos].to_vec()
            } else {
                // handed over unread; the handler reads it (what there is of it); the
                // connection goes on if it was read to its end
                let take = n.min(d.len() - pos);
                cut = take < n;
                pos += take;
                d[pos - take..pos].to_vec()
            }
        } else if !tes.is_empty() {
            match ref_chunked::reference(&d[pos..], 64 * 1024) {
                Outcome::Invalid => end!(End::Answer(vec![400])),
                Outcome::Eof => end!(End::Silent),
                Outcome::Ok(b, complete, used) => {
                    pos += used;
                    cut = !complete;
                    b
                }
            }
        } else {
            vec![]
        };
        let (mut close, mut keep) = (false, false);
        for v in named("Connection") {
            for o in v.split(',') {
                let o = o.trim_matches(|c| c == ' ' || c == '\t');
                close |= o.eq_ignore_ascii_case("close");
                keep |= o.eq_ignore_ascii_case("keep-alive");
            }
        }
        let last = close || (version == (1, 0) && !keep);
        exp.requests.push(Seen { method, url, version, headers, body, last });
        if last || cut {
            end!(End::Silent);
        }
    }
}

// ------------------------------------------------------------------------------------------
// Reading the answers

#[derive(Debug)]
struct Resp {
    version: String,
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn find_crlf(d: &[u8], from: usize) -> Option<usize> {
    (from..d.len().saturating_sub(1)).find(|&i| d[i] == b'\r' && d[i + 1] == b'\n')
}

/// One response at `*pos`; `head` says it answers a HEAD request (no body).
fn parse_resp(d: &[u8], pos: &mut usize, head: bool) -> Result<Resp, String> {
    let start = *pos;
    let e = find_crlf(d, start).ok_or("status line without CRLF")?;
    let sl = std::str::from_utf8(&d[start..e]).map_err(|_| "status line not UTF-8")?;
    let b = sl.as_bytes();
    if !(b.len() >= 13
        && (sl.starts_with("HTTP/1.1 ") || sl.starts_with("HTTP/1.0 "))
        && b[9..12].iter().all(u8::is_ascii_digit)
        && b[12] == b' '
        && b[13..].iter().all(|&c| c == b'\t' || (0x20..0x7f).contains(&c)))
    {
        return Err(format!("malformed status line {sl:?}"));
    }
    let status: u16 = sl[9..12].parse().unwrap();
    let mut p = e + 2;
    let mut headers = vec![];
    loop {
        let e = find_crlf(d, p).ok_or("header line without CRLF")?;
        let l = &d[p..e];
        p = e + 2;
        if l.is_empty() {
            break;
        }
        if l.contains(&b'\n') || l.contains(&b'\r') {
            return Err(format!("bare CR/LF in header {:?}", String::from_utf8_lossy(l)));
        }
        let c = l.iter().position(|&b| b == b':').ok_or("header without colon")?;
        if !is_token(&l[..c]) {
            return Err(format!("bad header name {:?}", String::from_utf8_lossy(l)));
        }
        let v = String::from_utf8_lossy(&l[c + 1..]).trim().to_string();
        if v.bytes().any(|b| b != b'\t' && b.is_ascii_control()) {
            return Err(format!("control byte in header {:?}", String::from_utf8_lossy(l)));
        }
        headers.push((String::from_utf8_lossy(&l[..c]).to_string(), v));
    }
    let get = |n: &str| -> Vec<String> {
        headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case(n)).map(|(_, v)| v.clone()).collect()
    };
    let cl = get("Content-Length");
    let te = get("Transfer-Encoding");
    if cl.len() > 1 || te.len() > 1 || (!cl.is_empty() && !te.is_empty()) {
        return Err(format!("ambiguous response framing {headers:?}"));
    }
    let no_body = head || (100..200).contains(&status) || status == 204 || status == 304;
    if (100..200).contains(&status) || status == 204 {
        if !cl.is_empty() || !te.is_empty() {
            return Err(format!("framing header on {status}"));
        }
    }
    let body = if no_body {
        vec![]
    } else if let Some(t) = te.first() {
        if !t.eq_ignore_ascii_case("chunked") {
            return Err(format!("response transfer-encoding {t:?}"));
        }
        match ref_chunked::reference(&d[p..], usize::MAX - 1) {
            Outcome::Ok(b, true, used) => {
                p += used;
                b
            }
            o => return Err(format!("bad chunked response body {o:?}")),
        }
    } else if let Some(c) = cl.first() {
        let n: usize = c.parse().map_err(|_| format!("bad response Content-Length {c:?}"))?;
        if d.len() - p < n {
            return Err(format!("response body short: {} of {n}", d.len() - p));
        }
        p += n;
        d[p - n..p].to_vec()
    } else {
        // close-delimited
        let b = d[p..].to_vec();
        p = d.len();
        b
    };
    *pos = p;
    Ok(Resp { version: sl[..8].to_string(), status, headers, body })
}

fn show(d: &[u8]) -> String {
    d.escape_ascii().to_string()
}

fuzz_target!(|input: &[u8]| {
    let data = expand(input);
    let f = fixture();

    let mut s = TcpStream::connect(f.addr).unwrap();
    let port = s.local_addr().unwrap().port();
    s.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    // Write in one go, unless the server stops reading (then the rest is dropped).
    let _ = s.write_all(&data);
    let _ = s.shutdown(Shutdown::Write);
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    let mut reset = false;
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {
                if Instant::now() > deadline {
                    panic!(
                        "HANG: no end of the answer within 3 s; input {:?}; got {:?}",
                        show(&data[..data.len().min(2000)]),
                        show(&out)
                    );
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                reset = true;
                break;
            }
            Err(e) => panic!("client read error {e:?}"),
        }
    }
    drop(s);
    let seen = f.log.lock().unwrap().remove(&port).unwrap_or_default();

    let exp = reference(&data);
    let ctx = || {
        format!(
            "\ninput: {}\nexpected: {:?} then {:?}\nseen by app: {:?}\nanswer: {}\nreset: {reset}",
            show(&data[..data.len().min(3000)]),
            exp.requests.iter().map(|r| (&r.method, &r.url, r.version, r.body.len())).collect::<Vec<_>>(),
            exp.end,
            seen.iter().map(|r| (&r.method, &r.url, r.version, r.body.len())).collect::<Vec<_>>(),
            show(&out[..out.len().min(3000)])
        )
    };

    if std::env::var_os("FUZZ_SUMMARY").is_some() {
        let feats: Vec<&str> = [
            ("chunked", &b"chunked"[..]), ("expect", b"100-continue"), ("te-resp", b"\nTE:"),
            ("http10", b"HTTP/1.0\r"), ("obs-text", b"\x80"),
        ]
        .iter()
        .filter(|(_, n)| data.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n)))
        .map(|(f, _)| *f)
        .collect();
        eprintln!("SUMMARY reqs={} end={:?} bodies={} feats={:?} len={}", exp.requests.len(), exp.end,
            exp.requests.iter().filter(|r| !r.body.is_empty()).count(), feats, data.len());
    }
    if std::env::var_os("FUZZ_DEBUG").is_some() {
        eprintln!("{}", ctx());
    }
    // 1. the requests handed to the application: exactly the reference's, field by field
    //    (each byte of the input in one request only: no other framing of the same bytes).
    for (i, (a, b)) in seen.iter().zip(exp.requests.iter()).enumerate() {
        if a != b {
            panic!("MISMATCH request #{i}: app saw {a:?}\nreference {b:?}{}", ctx());
        }
    }
    if seen.len() != exp.requests.len() {
        panic!("MISMATCH: app got {} requests, reference {}{}", seen.len(), exp.requests.len(), ctx());
    }
    for r in &seen {
        // sanity, independent of the reference
        assert!(is_token(r.method.as_bytes()), "bad method{}", ctx());
        assert!(!r.url.is_empty() && r.url.bytes().all(|b| b.is_ascii_graphic()), "bad url{}", ctx());
        assert!(r.version == (1, 0) || r.version == (1, 1), "bad version{}", ctx());
    }

    // 2. the answers: well formed, one per request in order, then the early answer if any.
    let mut p = 0;
    let mut finals: Vec<Resp> = vec![];
    let mut interims = 0;
    while p < out.len() {
        // An answer to HEAD has no content, the early answer refusing one included.
        let head = match seen.get(finals.len()) {
            Some(request) => request.method == "HEAD",
            None => exp.end_head,
        };
        match parse_resp(&out, &mut p, head) {
            Ok(r) if (100..200).contains(&r.status) => {
                interims += 1;
                if r.status != 100 {
                    panic!("unexpected interim {}{}", r.status, ctx());
                }
                if interims > 1000 {
                    panic!("too many interims{}", ctx());
                }
            }
            Ok(r) => finals.push(r),
            Err(_) if reset && finals.len() >= seen.len() => break,
            Err(e) => panic!("MALFORMED answer #{}: {e}{}", finals.len(), ctx()),
        }
    }
    for (i, r) in finals.iter().enumerate() {
        if i < seen.len() {
            let want_v = if seen[i].version == (1, 0) { "HTTP/1.0" } else { "HTTP/1.1" };
            assert!(r.status == 200, "answer #{i} is {} not the handler's 200{}", r.status, ctx());
            assert_eq!(r.version, want_v, "answer version{}", ctx());
            if seen[i].method != "HEAD" {
                assert_eq!(r.body, format!("seq={}", i + 1).as_bytes(), "answer body{}", ctx());
            }
        }
    }
    let early: Vec<&Resp> = finals.iter().skip(seen.len()).collect();
    match (&exp.end, early.as_slice()) {
        (End::Silent, []) => {}
        (End::Answer(_), []) | (End::Either(_), []) if reset => {}
        (End::Either(_), []) => {}
        (End::Answer(st) | End::Either(st), [r]) if st.contains(&r.status) => {
            let v = if exp.end_version == (1, 0) { "HTTP/1.0" } else { "HTTP/1.1" };
            // 414, 408, 505 and a 400 for the request line are always written in 1.1
            if r.version != v && r.version != "HTTP/1.1" {
                panic!("early answer version {} (want {v}){}", r.version, ctx());
            }
            if !r.headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("Connection") && v.eq_ignore_ascii_case("close")) {
                panic!("early answer without Connection: close{}", ctx());
            }
        }
        _ => panic!(
            "MISMATCH end: expected {:?}, got early answers {:?}{}",
            exp.end,
            early.iter().map(|r| r.status).collect::<Vec<_>>(),
            ctx()
        ),
    }

    // 3. no request left counted as pending once its connection is done.
    let t = Instant::now();
    while f.server.pending_requests() != 0 {
        if t.elapsed() > Duration::from_millis(500) {
            panic!("PENDING: pending_requests() = {} after the connection ended{}", f.server.pending_requests(), ctx());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
});
