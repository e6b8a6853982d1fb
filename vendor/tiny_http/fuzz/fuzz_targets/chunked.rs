//! Fuzzes `read_chunked` (vendor/tiny_http/src/util/chunked_body.rs) against a strict
//! reference decoder of RFC 9112 §7.1 written here from the grammar.
//!
//! Input layout: byte 0 = limit selector, byte 1 = read-size pattern, byte 2 = timeout
//! injection, rest = the byte stream that follows the request head.
#![no_main]
#![allow(dead_code)]

use libfuzzer_sys::fuzz_target;
use std::io::{self, ErrorKind, Read};

// The real code, compiled unchanged.
#[path = "../../src/common.rs"]
mod common;
#[path = "../../src/util/chunked_body.rs"]
mod chunked_body;

use chunked_body::read_chunked;

/// A source handing out at most `step(i)` bytes per read, counting what it gave.
struct Src<'a> {
    data: &'a [u8],
    pos: usize,
    pattern: u8,
    reads: usize,
    reads_after_eof: usize,
}

impl Read for Src<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reads += 1;
        if self.pos >= self.data.len() {
            self.reads_after_eof += 1;
            return Ok(0);
        }
        let step = match self.pattern % 4 {
            0 => usize::MAX,
            1 => 1,
            2 => 1 + (self.reads * 7 + self.pattern as usize) % 5,
            _ => 1 + (self.pattern as usize >> 2),
        };
        let n = buf.len().min(step).min(self.data.len() - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

mod ref_chunked;
use ref_chunked::{reference, Outcome};

fuzz_target!(|input: &[u8]| {
    if input.len() < 3 {
        return;
    }
    let limit = match input[0] {
        0..=63 => input[0] as usize,
        64..=127 => 64 * 1024,
        _ => 1 << 20,
    };
    let pattern = input[1];
    let fail_at = if input[2] < 16 { Some(input[2] as usize) } else { None };
    let data = &input[3..];

    let mut src = Src { data, pos: 0, pattern, reads: 0, reads_after_eof: 0 };
    let mut body = Vec::new();
    let mut timed_calls = 0usize;
    let mut after_error = 0usize;
    let mut failed = false;
    let res = read_chunked(&mut src, limit, &mut body, &mut |r| {
        timed_calls += 1;
        if failed {
            after_error += 1;
        }
        if Some(timed_calls) == fail_at {
            failed = true;
            return Err(io::Error::new(ErrorKind::TimedOut, "deadline"));
        }
        r
    });

    // bounded: never more than limit + 1 body bytes, every read through `timed`, and none
    // after the deadline error, at most one read at EOF, no more reads than bytes + 1.
    assert!(body.len() <= limit + 1, "body {} over limit {}", body.len(), limit);
    assert_eq!(timed_calls, src.reads, "a read not through timed");
    assert_eq!(after_error, 0, "read after the deadline error");
    assert!(src.reads_after_eof <= 1, "read past EOF {} times", src.reads_after_eof);
    assert!(src.reads <= data.len() + 1);

    if failed {
        let e = res.expect_err("a timed-out read was not reported");
        assert_eq!(e.kind(), ErrorKind::TimedOut, "deadline error replaced: {e:?}");
        return;
    }

    let got = match res {
        Ok(complete) => Outcome::Ok(body.clone(), complete, src.pos),
        Err(e) if e.kind() == ErrorKind::InvalidData => Outcome::Invalid,
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => Outcome::Eof,
        Err(e) => panic!("unexpected error kind {e:?}"),
    };
    let want = reference(data, limit);
    assert_eq!(
        got,
        want,
        "decoder vs reference on {:?} (limit {limit})",
        String::from_utf8_lossy(data)
    );
    // On an error the decoder may not have consumed bytes past the end of the body; on success
    // it consumed exactly the body (checked in Outcome::Ok's count).
});
