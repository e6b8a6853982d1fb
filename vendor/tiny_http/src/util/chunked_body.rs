//! todo-api patch: the decoder of a chunked request body (RFC 9112 §7.1), in place of
//! `chunked_transfer::Decoder`, which collected a chunk-size line until its `\r` without a
//! limit (one client sending `0` for ever grew the server by 40 MB/s), only returned once a
//! line was complete (a chunk extension trickled a byte every few seconds outlived the body
//! deadline, and 1,024 of them held every connection), and took what the grammar does not:
//! `+f`, ` f `, a bare `\n` inside a chunk extension (after which the next chunk's bytes
//! were data to it and a request to a parser that ends the line there), and no trailer at all
//! (a valid body with one was a 400).
//!
//! Every byte is read through `timed`, which checks the body's deadline, and every line is
//! bounded; anything off the grammar is `InvalidData`, which the caller answers with 400.

use std::io::{self, ErrorKind, Read};

use crate::common::{is_field_value_byte, is_tchar};

/// The longest chunk-size line, extensions included, and the longest trailer line.
pub const MAX_CHUNK_LINE: usize = 4 * 1024;
/// The most trailer bytes, as for a request's headers.
pub const MAX_TRAILER_BYTES: usize = 16 * 1024;

/// Reads a chunked body into `body`: all of it, and `Ok(true)`, if it holds at most `limit`
/// bytes; else `limit + 1` bytes of it, the rest unread, and `Ok(false)`. `timed` wraps each
/// read of the source: it turns a read taking too long (past the body's deadline) into an
/// error.
pub fn read_chunked<R: Read>(
    source: &mut R,
    limit: usize,
    body: &mut Vec<u8>,
    timed: &mut impl FnMut(io::Result<usize>) -> io::Result<usize>,
) -> io::Result<bool> {
    let mut line = Vec::new();
    loop {
        read_line(source, &mut line, MAX_CHUNK_LINE, timed)?;
        let size = chunk_size(&line).ok_or_else(|| bad("a malformed chunk-size line"))?;
        if size == 0 {
            break;
        }
        let room = (limit + 1 - body.len()) as u64;
        let take = size.min(room) as usize;
        let start = body.len();
        body.resize(start + take, 0);
        read_exact(source, &mut body[start..], timed)?;
        if size > room {
            return Ok(false);
        }
        let mut end = [0u8; 2];
        read_exact(source, &mut end, timed)?;
        if &end != b"\r\n" {
            return Err(bad("chunk data longer than its size"));
        }
        if body.len() > limit {
            return Ok(false);
        }
    }
    // The trailer section: field lines, read and dropped (RFC 9112 §7.1.2: a server may
    // discard them), up to an empty line.
    let mut trailers = 0;
    loop {
        read_line(source, &mut line, MAX_CHUNK_LINE, timed)?;
        if line.is_empty() {
            return Ok(true);
        }
        trailers += line.len() + 2;
        if trailers > MAX_TRAILER_BYTES || !field_line(&line) {
            return Err(bad("a malformed or too large trailer section"));
        }
    }
}

fn bad(what: &str) -> io::Error {
    io::Error::new(ErrorKind::InvalidData, what.to_string())
}

/// One byte, or an error for the end of the stream.
fn read_byte<R: Read>(
    source: &mut R,
    timed: &mut impl FnMut(io::Result<usize>) -> io::Result<usize>,
) -> io::Result<u8> {
    let mut byte = [0u8; 1];
    match timed(source.read(&mut byte))? {
        0 => Err(ErrorKind::UnexpectedEof.into()),
        _ => Ok(byte[0]),
    }
}

fn read_exact<R: Read>(
    source: &mut R,
    mut into: &mut [u8],
    timed: &mut impl FnMut(io::Result<usize>) -> io::Result<usize>,
) -> io::Result<()> {
    while !into.is_empty() {
        match timed(source.read(into))? {
            0 => return Err(ErrorKind::UnexpectedEof.into()),
            n => into = &mut into[n..],
        }
    }
    Ok(())
}

/// A line ended by CRLF, without it, into `line`; a bare `\n`, a `\r` not followed by `\n`,
/// or more than `max` bytes is an error.
fn read_line<R: Read>(
    source: &mut R,
    line: &mut Vec<u8>,
    max: usize,
    timed: &mut impl FnMut(io::Result<usize>) -> io::Result<usize>,
) -> io::Result<()> {
    line.clear();
    loop {
        match read_byte(source, timed)? {
            b'\r' => {
                return match read_byte(source, timed)? {
                    b'\n' => Ok(()),
                    _ => Err(bad("a carriage return without a line feed")),
                }
            }
            b'\n' => return Err(bad("a bare line feed")),
            _ if line.len() == max => return Err(bad("a line too long")),
            b => line.push(b),
        }
    }
}

/// `chunk-size [ chunk-ext ]` (RFC 9112 §7.1): the size, if the line is one.
fn chunk_size(line: &[u8]) -> Option<u64> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return None;
    }
    let size = line[..digits].iter().try_fold(0u64, |size, &b| {
        let digit = (b as char).to_digit(16)? as u64;
        size.checked_mul(16)?.checked_add(digit)
    })?;
    chunk_ext(&line[digits..]).then_some(size)
}

/// `*( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )`, a value being a token
/// or a quoted-string.
fn chunk_ext(mut rest: &[u8]) -> bool {
    let skip_ws =
        |s: &[u8]| -> usize { s.iter().take_while(|&&b| b == b' ' || b == b'\t').count() };
    while !rest.is_empty() {
        rest = &rest[skip_ws(rest)..];
        let Some(after) = rest.strip_prefix(b";") else {
            return false;
        };
        rest = &after[skip_ws(after)..];
        let name = token_len(rest);
        if name == 0 {
            return false;
        }
        rest = &rest[name..];
        let ws = skip_ws(rest);
        if rest[ws..].first() != Some(&b'=') {
            continue;
        }
        rest = &rest[ws + 1..];
        rest = &rest[skip_ws(rest)..];
        let value = if rest.first() == Some(&b'"') {
            quoted_len(rest)
        } else {
            token_len(rest)
        };
        if value == 0 {
            return false;
        }
        rest = &rest[value..];
    }
    true
}

/// The length of the token `s` starts with (RFC 9110 §5.6.2).
fn token_len(s: &[u8]) -> usize {
    s.iter().take_while(|&&b| is_tchar(b)).count()
}

/// The length of the quoted-string `s` starts with (RFC 9110 §5.6.4), or 0 if it is not one.
fn quoted_len(s: &[u8]) -> usize {
    let text = |b: u8| b == b'\t' || b == b' ' || (0x21..=0x7e).contains(&b) || b >= 0x80;
    let mut at = 1;
    while at < s.len() {
        match s[at] {
            b'"' => return at + 1,
            b'\\' if s.get(at + 1).is_some_and(|&b| text(b)) => at += 2,
            b'\\' => return 0,
            b if text(b) => at += 1,
            _ => return 0,
        }
    }
    0
}

/// `field-name ":" OWS field-value OWS` with a token name and no control character but
/// HTAB in the value (RFC 9110 §5.1, §5.5).
fn field_line(line: &[u8]) -> bool {
    let name = token_len(line);
    name > 0
        && line.get(name) == Some(&b':')
        && line[name + 1..].iter().all(|&b| is_field_value_byte(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(raw: &[u8], limit: usize) -> io::Result<(Vec<u8>, bool, usize)> {
        let mut source = raw;
        let mut body = Vec::new();
        let complete = read_chunked(&mut source, limit, &mut body, &mut |r| r)?;
        Ok((body, complete, source.len()))
    }

    #[test]
    fn bodies_with_extensions_and_trailers_are_read_to_their_end() {
        for raw in [
            &b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nNEXT"[..],
            b"5;a=b;c\r\nhello\r\n006 ; q=\"x \\\" y\"\r\n world\r\n0\r\n\r\nNEXT",
            b"5\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\nY:\r\n\r\nNEXT",
            b"0005\r\nhello\r\n6\r\n world\r\n0;end\r\n\r\nNEXT",
        ] {
            let (body, complete, left) = decode(raw, 100).unwrap();
            assert_eq!(body, b"hello world", "{:?}", String::from_utf8_lossy(raw));
            assert!(complete);
            assert_eq!(left, 4, "stopped where the body ends");
        }
    }

    #[test]
    fn what_the_grammar_does_not_allow_is_invalid_data() {
        for raw in [
            &b"+5\r\nhello\r\n0\r\n\r\n"[..],
            b" 5\r\nhello\r\n0\r\n\r\n",
            b"5 \r\nhello\r\n0\r\n\r\n",
            b"5;\r\nhello\r\n0\r\n\r\n",
            b"5;a\nb\r\nhello\r\n0\r\n\r\n",
            b"5;\nhello\r\n0\r\n\r\n",
            b"5;a=\r\nhello\r\n0\r\n\r\n",
            b"5;a=\"open\r\nhello\r\n0\r\n\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\rhello\r\n0\r\n\r\n",
            b"zz\r\nhello\r\n0\r\n\r\n",
            b"\r\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloX\r\n0\r\n\r\n",
            b"10000000000000000\r\n",
            b"5\r\nhello\r\n0\r\nno colon\r\n\r\n",
            b"5\r\nhello\r\n0\r\n: empty name\r\n\r\n",
            b"5\r\nhello\r\n0\r\nX-A: a\x00b\r\n\r\n",
        ] {
            let e = decode(raw, 100).expect_err(&String::from_utf8_lossy(raw));
            assert_eq!(
                e.kind(),
                ErrorKind::InvalidData,
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn lines_are_bounded() {
        let mut long = vec![b'0'; MAX_CHUNK_LINE + 1];
        long.extend_from_slice(b"\r\n\r\n");
        assert_eq!(
            decode(&long, 100).unwrap_err().kind(),
            ErrorKind::InvalidData
        );
        let mut fits = vec![b'0'; MAX_CHUNK_LINE];
        fits.extend_from_slice(b"\r\n\r\n");
        assert_eq!(decode(&fits, 100).unwrap(), (vec![], true, 0));
        let trailers: Vec<u8> = b"0\r\n"
            .iter()
            .chain(
                b"X-A: aaaaaaaa\r\n"
                    .repeat(MAX_TRAILER_BYTES / 15 + 1)
                    .iter(),
            )
            .chain(b"\r\n")
            .copied()
            .collect();
        assert_eq!(
            decode(&trailers, 100).unwrap_err().kind(),
            ErrorKind::InvalidData
        );
    }

    #[test]
    fn a_body_over_the_limit_stops_one_byte_past_it() {
        // In one chunk declaring far more, and over several chunks.
        let (body, complete, _) = decode(b"ffffffffffff\r\nabcdefghijklmnop", 10).unwrap();
        assert_eq!((body.as_slice(), complete), (&b"abcdefghijk"[..], false));
        let (body, complete, _) = decode(b"6\r\nabcdef\r\n6\r\nghijkl\r\n0\r\n\r\n", 10).unwrap();
        assert_eq!((body.as_slice(), complete), (&b"abcdefghijk"[..], false));
        let (body, complete, _) = decode(b"6\r\nabcdef\r\n4\r\nghij\r\n0\r\n\r\n", 10).unwrap();
        assert_eq!((body.as_slice(), complete), (&b"abcdefghij"[..], true));
    }

    #[test]
    fn every_read_goes_through_timed() {
        // A source that hands out one byte at a time, like a client trickling them.
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let Some((&b, rest)) = self.0.split_first() else {
                    return Ok(0);
                };
                buf[0] = b;
                self.0 = rest;
                Ok(1)
            }
        }
        let raw = b"5;a=b\r\nhello\r\n0\r\n\r\n";
        let mut reads = 0;
        let mut body = Vec::new();
        let stop_after = 8;
        let e = read_chunked(&mut Trickle(raw), 100, &mut body, &mut |r| {
            reads += 1;
            if reads > stop_after {
                Err(ErrorKind::TimedOut.into())
            } else {
                r
            }
        })
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut);
        assert_eq!(
            reads,
            stop_after + 1,
            "gave up at the first read past the deadline"
        );
    }
}
