//! A strict reference decoder of RFC 9112 §7.1 chunked bodies, with the documented limits
//! of tiny_http's decoder (lines <= 4 KiB, trailers <= 16 KiB, sizes that fit u64, at most
//! limit + 1 body bytes). Shared by the `chunked` and `server` fuzz targets.
#![allow(dead_code)]

pub const MAX_CHUNK_LINE: usize = 4 * 1024;
pub const MAX_TRAILER_BYTES: usize = 16 * 1024;

#[derive(Debug, PartialEq, Clone)]
pub enum Outcome {
    /// body, complete, bytes consumed
    Ok(Vec<u8>, bool, usize),
    Invalid,
    Eof,
}

// ---------------- reference decoder (strict RFC 9112 §7.1, plus the documented limits) ----

struct Ref<'a> {
    d: &'a [u8],
    p: usize,
}

enum LineErr {
    Invalid,
    Eof,
}

impl Ref<'_> {
    /// A CRLF-terminated line; bare LF, CR without LF, or > max bytes: invalid.
    fn line(&mut self, max: usize) -> Result<&[u8], LineErr> {
        let start = self.p;
        loop {
            let Some(&b) = self.d.get(self.p) else {
                return Err(LineErr::Eof);
            };
            match b {
                b'\r' => {
                    let end = self.p;
                    match self.d.get(self.p + 1) {
                        None => return Err(LineErr::Eof),
                        Some(b'\n') => {
                            self.p += 2;
                            return Ok(&self.d[start..end]);
                        }
                        Some(_) => return Err(LineErr::Invalid),
                    }
                }
                b'\n' => return Err(LineErr::Invalid),
                _ => {
                    if self.p - start == max {
                        return Err(LineErr::Invalid);
                    }
                    self.p += 1;
                }
            }
        }
    }
}

pub fn is_tchar(b: u8) -> bool {
    // RFC 9110 §5.6.2
    matches!(b, b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^'
        | b'_' | b'`' | b'|' | b'~')
        || b.is_ascii_digit()
        || b.is_ascii_alphabetic()
}
pub fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}
fn is_qdtext(b: u8) -> bool {
    b == b'\t' || b == b' ' || b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b) || b >= 0x80
}
pub fn is_vchar_or_obs(b: u8) -> bool {
    (0x21..=0x7e).contains(&b) || b >= 0x80
}

/// A tiny recursive-descent matcher over `s`.
struct P<'a> {
    s: &'a [u8],
    i: usize,
}
impl P<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn bws(&mut self) {
        while self.peek().is_some_and(is_ws) {
            self.i += 1;
        }
    }
    fn token(&mut self) -> bool {
        let st = self.i;
        while self.peek().is_some_and(is_tchar) {
            self.i += 1;
        }
        self.i > st
    }
    fn quoted(&mut self) -> bool {
        if self.peek() != Some(b'"') {
            return false;
        }
        self.i += 1;
        loop {
            match self.peek() {
                Some(b'"') => {
                    self.i += 1;
                    return true;
                }
                Some(b'\\') => {
                    // quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text )
                    match self.s.get(self.i + 1) {
                        Some(&c) if c == b'\t' || c == b' ' || is_vchar_or_obs(c) => self.i += 2,
                        _ => return false,
                    }
                }
                Some(c) if is_qdtext(c) => self.i += 1,
                _ => return false,
            }
        }
    }
}

/// chunk-size [ chunk-ext ], sizes over u64 being refused (an implementation limit).
fn ref_size_line(line: &[u8]) -> Option<u64> {
    let mut p = P { s: line, i: 0 };
    let mut size: u64 = 0;
    let mut nd = 0;
    while let Some(c) = p.peek() {
        let v = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => break,
        };
        size = size.checked_mul(16)?.checked_add(v as u64)?;
        nd += 1;
        p.i += 1;
    }
    if nd == 0 {
        return None;
    }
    // chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
    loop {
        if p.i == line.len() {
            return Some(size);
        }
        p.bws();
        if p.peek() != Some(b';') {
            return None;
        }
        p.i += 1;
        p.bws();
        if !p.token() {
            return None;
        }
        let save = p.i;
        p.bws();
        if p.peek() == Some(b'=') {
            p.i += 1;
            p.bws();
            if !(p.token() || p.quoted()) {
                return None;
            }
        } else {
            p.i = save;
        }
    }
}

/// field-line = field-name ":" OWS field-value OWS
pub fn ref_field_line(line: &[u8]) -> bool {
    let mut p = P { s: line, i: 0 };
    if !p.token() || p.peek() != Some(b':') {
        return false;
    }
    line[p.i + 1..].iter().all(|&b| is_ws(b) || is_vchar_or_obs(b))
}

pub fn reference(d: &[u8], limit: usize) -> Outcome {
    let mut r = Ref { d, p: 0 };
    let mut body = Vec::new();
    macro_rules! line {
        ($max:expr) => {
            match r.line($max) {
                Ok(l) => l.to_vec(),
                Err(LineErr::Invalid) => return Outcome::Invalid,
                Err(LineErr::Eof) => return Outcome::Eof,
            }
        };
    }
    loop {
        let l = line!(MAX_CHUNK_LINE);
        let Some(size) = ref_size_line(&l) else {
            return Outcome::Invalid;
        };
        if size == 0 {
            break;
        }
        let room = (limit + 1 - body.len()) as u64;
        if size >= room {
            // limit + 1 bytes in all, then stop (an exact fit still reads its CRLF: see below)
            let take = room as usize;
            if r.p + take > d.len() {
                return Outcome::Eof;
            }
            body.extend_from_slice(&d[r.p..r.p + take]);
            r.p += take;
            if size > room {
                return Outcome::Ok(body, false, r.p);
            }
            // size == room: the implementation reads the chunk's CRLF before stopping.
            match d.get(r.p..r.p + 2) {
                None => return Outcome::Eof,
                Some(b"\r\n") => return Outcome::Ok(body, false, r.p + 2),
                Some(_) => return Outcome::Invalid,
            }
        }
        let size = size as usize;
        if r.p + size > d.len() {
            return Outcome::Eof;
        }
        body.extend_from_slice(&d[r.p..r.p + size]);
        r.p += size;
        match d.get(r.p..r.p + 2) {
            Some(b"\r\n") => r.p += 2,
            Some(_) => return Outcome::Invalid,
            None => {
                // one byte left: if it is not CR the data is already too long
                return Outcome::Eof;
            }
        }
    }
    let mut total = 0;
    loop {
        let l = line!(MAX_CHUNK_LINE);
        if l.is_empty() {
            return Outcome::Ok(body, true, r.p);
        }
        total += l.len() + 2;
        if total > MAX_TRAILER_BYTES || !ref_field_line(&l) {
            return Outcome::Invalid;
        }
    }
}

