// SPDX-License-Identifier: GPL-2.0

//! Randomised tests of the layer-7 code (issue 5): HTTP heads generated valid and then
//! mutated, parsed whole and in pieces; chunked bodies split at random; rule texts round-tripped
//! and matched; scheduler invariants. A seeded xorshift generator makes every run identical.
//! Expected values come from what the generator built, not from the code under test.
//!
//! Cases counted: one per request or response head (valid or mutated, all its partial parses
//! included), chunked body, rule text, scheduler pick checked and Maglev table built. The total is printed
//! and must reach 1,000,000.

use hark_proto::http1::{
    is_hop_by_hop, parse_request, parse_response, rewrite_response_head, BodyRelay, ChunkLimits,
    ChunkedDecoder, Framing, Header, HttpError, Limits, Method, Request, Status,
    RESPONSE_HEAD_GROWTH,
};
use hark_proto::l7_rules::{glob_match, parse_target, MatchKind, Rule, TargetText, MAX_TEXT};
use hark_proto::l7_sched::{
    least_conn, maglev_build, maglev_lookup, source_hash, weighted_least_conn, RoundRobin,
    ServerState, ServerView, SmoothWrr,
};
use std::net::IpAddr;
use std::time::Instant;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
    fn word(&mut self, out: &mut Vec<u8>, alphabet: &[u8], min: usize, max: usize) {
        for _ in 0..min + self.below(max - min + 1) {
            out.push(*self.pick(alphabet));
        }
    }
}

const LOWER: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
const PATH: &[u8] =
    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:@%";
const TCHAR: &[u8] =
    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-.^_`|~";
const VALUE: &[u8] =
    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 \t!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

/// What a generated request must parse to.
struct Expect {
    method: Vec<u8>,
    path: Vec<u8>,
    host: Option<Vec<u8>>,
    framing: Framing,
    keep_alive: bool,
    expect_continue: bool,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    head_len: usize,
}

fn gen_request(r: &mut Rng, buf: &mut Vec<u8>) -> Expect {
    buf.clear();
    for _ in 0..[0, 0, 0, 1, 2][r.below(5)] {
        buf.extend_from_slice(b"\r\n");
    }
    let methods: [&[u8]; 8] = [
        b"GET",
        b"HEAD",
        b"POST",
        b"PUT",
        b"DELETE",
        b"OPTIONS",
        b"PATCH",
        b"PROPFIND",
    ];
    let method = r.pick(&methods).to_vec();
    buf.extend_from_slice(&method);
    buf.push(b' ');
    let mut host = Vec::new();
    r.word(&mut host, LOWER, 1, 12);
    if r.chance(30) {
        host.extend_from_slice(b".example");
    }
    if r.chance(30) {
        host.push(b':');
        r.word(&mut host, b"0123456789", 1, 5);
    }
    let absolute = r.chance(10);
    let mut path = Vec::new();
    for _ in 0..1 + r.below(4) {
        path.push(b'/');
        r.word(&mut path, PATH, 0, 10);
    }
    if absolute {
        buf.extend_from_slice(b"http://");
        buf.extend_from_slice(&host);
    }
    buf.extend_from_slice(&path);
    if r.chance(30) {
        buf.push(b'?');
        r.word(buf, PATH, 0, 20);
    }
    let http11 = r.chance(80);
    buf.extend_from_slice(if http11 {
        b" HTTP/1.1\r\n"
    } else {
        b" HTTP/1.0\r\n"
    });

    let mut headers = Vec::new();
    let mut push = |buf: &mut Vec<u8>, name: &[u8], value: &[u8], r: &mut Rng| {
        buf.extend_from_slice(name);
        buf.push(b':');
        for _ in 0..r.below(3) {
            buf.push(*r.pick(b" \t"));
        }
        buf.extend_from_slice(value);
        for _ in 0..r.below(2) {
            buf.push(*r.pick(b" \t"));
        }
        buf.extend_from_slice(b"\r\n");
        headers.push((name.to_vec(), value.to_vec()));
    };
    let with_host = http11 || r.chance(50);
    let mut extra = Vec::new();
    let n_extra = r.below(8);
    let host_at = r.below(n_extra + 1);
    for k in 0..=n_extra {
        if k == host_at && with_host {
            let name: &[u8] = r.pick::<&[u8]>(&[&b"Host"[..], b"host", b"HOST"]);
            push(buf, name, &host, r);
        }
        if k == n_extra {
            break;
        }
        extra.clear();
        extra.extend_from_slice(b"X-");
        r.word(&mut extra, TCHAR, 1, 12);
        let mut v = Vec::new();
        r.word(&mut v, VALUE, 0, 30);
        while v.last().is_some_and(|b| *b == b' ' || *b == b'\t') {
            v.pop();
        }
        while v.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
            v.remove(0);
        }
        push(buf, &extra.clone(), &v, r);
    }
    let framing = match r.below(4) {
        0 | 1 => Framing::None,
        2 => {
            let n = r.next() % 1_000_000;
            let s = n.to_string();
            push(buf, b"Content-Length", s.as_bytes(), r);
            if r.chance(20) {
                push(buf, b"content-length", s.as_bytes(), r);
            }
            Framing::ContentLength(n)
        }
        _ if http11 => {
            let te: &[u8] = r.pick::<&[u8]>(&[
                &b"chunked"[..],
                b"Chunked",
                b"gzip, chunked",
                b"gzip,chunked",
            ]);
            push(buf, b"Transfer-Encoding", te, r);
            Framing::Chunked
        }
        _ => Framing::None,
    };
    let conn: &[u8] = r.pick::<&[u8]>(&[
        &b""[..],
        b"close",
        b"keep-alive",
        b"Keep-Alive, Upgrade",
        b"upgrade,CLOSE",
    ]);
    if !conn.is_empty() {
        push(buf, b"Connection", conn, r);
    }
    let lower = conn.to_ascii_lowercase();
    let close = lower.windows(5).any(|w| w == b"close");
    let ka_token = lower.windows(10).any(|w| w == b"keep-alive");
    let expect = r.chance(10);
    if expect {
        push(buf, b"Expect", b"100-continue", r);
    }
    buf.extend_from_slice(b"\r\n");
    let head_len = buf.len();
    // What follows the head: body bytes or the next request, never part of the head.
    r.word(buf, VALUE, 0, 20);
    Expect {
        method,
        path,
        host: if absolute || with_host {
            Some(host)
        } else {
            None
        },
        framing,
        keep_alive: !close && (http11 || ka_token),
        expect_continue: expect && http11,
        headers,
        head_len,
    }
}

fn outcome(buf: &[u8]) -> String {
    let mut h = [Header::EMPTY; 64];
    format!("{:?}", parse_request(buf, &mut h, &Limits::DEFAULT))
}

fn check_valid(e: &Expect, r: &Request<'_, '_>, buf: &[u8]) {
    let ctx = || String::from_utf8_lossy(buf).into_owned();
    assert_eq!(r.method.as_bytes(), &e.method[..], "{}", ctx());
    assert_eq!(r.path(), &e.path[..], "{}", ctx());
    assert_eq!(r.host.map(|h| h.to_vec()), e.host, "{}", ctx());
    assert_eq!(r.framing, e.framing, "{}", ctx());
    assert_eq!(r.keep_alive, e.keep_alive, "{}", ctx());
    assert_eq!(r.expect_continue, e.expect_continue, "{}", ctx());
    assert_eq!(r.head_len, e.head_len, "{}", ctx());
    assert_eq!(r.headers.len(), e.headers.len(), "{}", ctx());
    for (h, (n, v)) in r.headers.iter().zip(&e.headers) {
        assert_eq!((h.name, h.value), (&n[..], &v[..]), "{}", ctx());
    }
}

/// Invariants of any accepted head, checked against the head's own bytes.
fn check_accepted(r: &Request<'_, '_>, buf: &[u8]) {
    assert!(r.start <= r.head_len && r.head_len <= buf.len());
    assert!(buf[..r.head_len].ends_with(b"\r\n\r\n"));
    let head = &buf[r.start..r.head_len];
    // Every LF of the head is preceded by CR, and there is no other CR.
    for (i, &b) in head.iter().enumerate() {
        if b == b'\n' {
            assert_eq!(head[i - 1], b'\r');
        }
        if b == b'\r' {
            assert_eq!(head[i + 1], b'\n');
        }
    }
    let named = |n: &[u8]| {
        r.headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(n))
            .count()
    };
    let cl = named(b"content-length");
    let te = named(b"transfer-encoding");
    assert!(!(cl > 0 && te > 0), "CL and TE accepted");
    assert!(named(b"host") <= 1);
    match r.framing {
        Framing::Chunked => assert!(te > 0),
        Framing::ContentLength(_) => assert!(cl > 0),
        Framing::None => assert!(cl == 0 && te == 0),
        f => panic!("request framing {f:?}"),
    }
    if r.version == hark_proto::http1::Version::Http11 {
        assert!(r.host.is_some());
    }
    for h in r.headers {
        assert!(!h.name.is_empty() && h.name.iter().all(|b| TCHAR.contains(b)));
        assert!(!h.value.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0));
    }
}

fn mutate(r: &mut Rng, buf: &mut Vec<u8>) {
    const NASTY: &[u8] = b"\r\n \t:,;\"\x00\x7f\x80\xff=/?#aZ09";
    const LINES: [&[u8]; 8] = [
        b"Transfer-Encoding: chunked\r\n",
        b"Content-Length: 5\r\n",
        b"Content-Length: 6\r\n",
        b"Transfer-Encoding: gzip\r\n",
        b" folded\r\n",
        b"Host: other\r\n",
        b"Transfer-Encoding : chunked\r\n",
        b"\r\n",
    ];
    for _ in 0..1 + r.below(3) {
        if buf.is_empty() {
            return;
        }
        let at = r.below(buf.len());
        match r.below(5) {
            0 => buf[at] = *r.pick(NASTY),
            1 => buf.insert(at, *r.pick(NASTY)),
            2 => {
                buf.remove(at);
            }
            3 => {
                // At the start of a line.
                let line = buf[..at]
                    .iter()
                    .rposition(|&b| b == b'\n')
                    .map_or(0, |p| p + 1);
                let l = r.pick(&LINES);
                buf.splice(line..line, l.iter().copied());
            }
            _ => buf[at] ^= 1 << r.below(8),
        }
    }
}

fn fuzz_requests(r: &mut Rng, valid: usize, mutated: usize) -> usize {
    let mut buf = Vec::new();
    for _ in 0..valid {
        let e = gen_request(r, &mut buf);
        let mut h = [Header::EMPTY; 64];
        match parse_request(&buf, &mut h, &Limits::DEFAULT) {
            Ok(Status::Complete(req)) => {
                check_valid(&e, &req, &buf);
                check_accepted(&req, &buf);
            }
            x => panic!("{x:?} for {:?}", String::from_utf8_lossy(&buf)),
        }
        // Arriving in random pieces: partial until the head is complete, then the same answer.
        let whole = outcome(&buf);
        let mut have = 0;
        loop {
            have = (have + 1 + r.below(e.head_len / 3 + 1)).min(buf.len());
            let o = outcome(&buf[..have]);
            if have < e.head_len {
                assert_eq!(o, "Ok(Partial)");
            } else {
                assert_eq!(o, whole);
                break;
            }
        }
    }
    for _ in 0..mutated {
        gen_request(r, &mut buf);
        mutate(r, &mut buf);
        let whole = outcome(&buf);
        let mut h = [Header::EMPTY; 64];
        if let Ok(Status::Complete(req)) = parse_request(&buf, &mut h, &Limits::DEFAULT) {
            check_accepted(&req, &buf);
        }
        // Any prefix answers Partial or what the whole buffer answers (byte-order checks).
        for _ in 0..3 {
            let k = r.below(buf.len() + 1);
            let o = outcome(&buf[..k]);
            if o != "Ok(Partial)" && o != whole {
                // A complete head in the prefix is the same head when more bytes follow.
                panic!(
                    "prefix {k}: {o} vs {whole} for {:?}",
                    String::from_utf8_lossy(&buf)
                );
            }
        }
    }
    valid + mutated
}

/// Response heads: generated ones parse to the framing RFC 9112 §6.3 gives; mutated ones
/// answer the same on every prefix or `Partial`.
fn fuzz_responses(r: &mut Rng, n: usize) -> usize {
    let mut buf = Vec::new();
    for case in 0..n {
        buf.clear();
        let http11 = r.chance(80);
        buf.extend_from_slice(if http11 { b"HTTP/1.1 " } else { b"HTTP/1.0 " });
        let code = *r.pick(&[100u16, 101, 200, 204, 206, 301, 304, 404, 500, 503]);
        buf.extend_from_slice(code.to_string().as_bytes());
        if r.chance(90) {
            buf.push(b' ');
            r.word(&mut buf, VALUE, 0, 12);
        }
        buf.extend_from_slice(b"\r\n");
        let method = *r.pick(&[Method::Get, Method::Get, Method::Head, Method::Connect]);
        let body = r.below(3);
        let len = r.next() % 100_000;
        match body {
            0 => buf.extend_from_slice(format!("Content-Length: {len}\r\n").as_bytes()),
            1 => buf.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
            _ => {}
        }
        let close = r.chance(30);
        if close {
            buf.extend_from_slice(b"Connection: close\r\n");
        }
        let ka = !close && r.chance(50);
        if ka {
            buf.extend_from_slice(b"Connection: keep-alive\r\n");
        }
        buf.extend_from_slice(b"\r\n");
        let head_len = buf.len();
        r.word(&mut buf, VALUE, 0, 10);
        let want = if code == 101 || (method == Method::Connect && (200..300).contains(&code)) {
            Framing::Tunnel
        } else if code < 200 || code == 204 || code == 304 || method == Method::Head {
            Framing::None
        } else if body == 0 {
            Framing::ContentLength(len)
        } else if body == 1 && http11 {
            Framing::Chunked
        } else {
            Framing::UntilClose
        };
        let persistent =
            !close && (http11 || ka) && !matches!(want, Framing::Tunnel | Framing::UntilClose);
        let mut h = [Header::EMPTY; 8];
        match parse_response(&buf, &mut h, &Limits::DEFAULT, method) {
            Ok(Status::Complete(resp)) => {
                assert_eq!(
                    (resp.code, resp.framing, resp.keep_alive, resp.head_len),
                    (code, want, persistent, head_len),
                    "{:?}",
                    String::from_utf8_lossy(&buf)
                );
            }
            x => panic!("{x:?} for {:?}", String::from_utf8_lossy(&buf)),
        }
        // Rewritten for a client (keep-alive or close): the same response, hop-by-hop fields
        // gone, the body bytes after the head unchanged.
        // Half of them get a persistence cookie added.
        let keep = r.chance(50);
        let extra: &[u8] = if r.chance(50) {
            b"Set-Cookie: SRV=0000000a0123456789abcdef; Path=/; HttpOnly\r\n"
        } else {
            b""
        };
        let mut out = buf.clone();
        out.resize(buf.len() + RESPONSE_HEAD_GROWTH + extra.len(), 0);
        let n = rewrite_response_head(&mut out, buf.len(), head_len, keep, extra).unwrap();
        out.truncate(n + buf.len() - head_len);
        assert_eq!(&out[n..], &buf[head_len..]);
        let mut h = [Header::EMPTY; 8];
        match parse_response(&out, &mut h, &Limits::DEFAULT, method) {
            Ok(Status::Complete(resp)) => {
                let conn: Vec<_> = resp
                    .headers
                    .iter()
                    .filter(|f| is_hop_by_hop(f.name))
                    .collect();
                assert_eq!(conn.len(), 1);
                let cookies = resp
                    .headers
                    .iter()
                    .filter(|f| f.name == b"Set-Cookie")
                    .count();
                assert_eq!(cookies, usize::from(!extra.is_empty()));
                let want_ka = keep && !matches!(want, Framing::Tunnel | Framing::UntilClose);
                assert_eq!(
                    (resp.code, resp.framing, resp.keep_alive, resp.head_len),
                    (code, want, want_ka, n),
                    "{:?}",
                    String::from_utf8_lossy(&out)
                );
            }
            x => panic!("{x:?} for {:?}", String::from_utf8_lossy(&out)),
        }
        if case % 2 == 1 {
            mutate(r, &mut buf);
        }
        let answer = |b: &[u8]| {
            let mut h = [Header::EMPTY; 8];
            format!("{:?}", parse_response(b, &mut h, &Limits::DEFAULT, method))
        };
        let whole = answer(&buf);
        for _ in 0..2 {
            let k = r.below(buf.len() + 1);
            let o = answer(&buf[..k]);
            assert!(
                o == "Ok(Partial)" || o == whole,
                "prefix {k}: {o} vs {whole}"
            );
        }
    }
    n
}

fn fuzz_chunked(r: &mut Rng, n: usize) -> usize {
    let mut body = Vec::new();
    let limits = ChunkLimits::DEFAULT;
    for case in 0..n {
        body.clear();
        let mut data = 0u64;
        for _ in 0..r.below(6) {
            let size = 1 + if r.chance(10) {
                r.below(5000)
            } else {
                r.below(40)
            };
            let digits = format!("{size:x}");
            let zeros = if r.chance(10) { r.below(3) } else { 0 };
            body.extend(std::iter::repeat_n(b'0', zeros));
            let upper = digits.to_uppercase();
            body.extend_from_slice(if r.chance(50) {
                digits.as_bytes()
            } else {
                upper.as_bytes()
            });
            if r.chance(20) {
                body.extend_from_slice(b";name=\"v a l\";x");
            }
            body.extend_from_slice(b"\r\n");
            r.word(&mut body, VALUE, size, size);
            body.extend_from_slice(b"\r\n");
            data += size as u64;
        }
        body.extend_from_slice(b"0\r\n");
        for _ in 0..r.below(3) {
            body.extend_from_slice(b"X-Trailer: ");
            r.word(&mut body, LOWER, 0, 10);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"\r\n");
        let len = body.len();
        body.extend_from_slice(b"GET / HTTP/1.1\r\n");
        let mutated = case % 4 == 3;
        if mutated {
            let at = r.below(len);
            body[at] = *r.pick(b"\r\n;0aZ \x00");
        }
        // One shot.
        let mut one = ChunkedDecoder::new(limits);
        let whole = one.feed(&body);
        if !mutated {
            let p = whole.unwrap();
            assert_eq!((p.consumed, p.done, one.body_bytes()), (len, true, data));
        }
        // Random pieces through BodyRelay: the same bytes, the same end or the same error.
        let mut relay = BodyRelay::new(Framing::Chunked, limits);
        let mut off = 0;
        let pieces = loop {
            let k = (off + 1 + r.below(64)).min(body.len());
            match relay.feed(&body[off..k]) {
                Ok(p) => {
                    off += p.consumed;
                    if p.done {
                        break Ok(off);
                    }
                    assert_eq!(off, k);
                    if k == body.len() {
                        break Err(None);
                    }
                }
                Err(e) => break Err(Some(e)),
            }
        };
        match whole {
            Ok(p) if p.done => assert_eq!(pieces, Ok(p.consumed)),
            Ok(_) => assert_eq!(pieces, Err(None)),
            Err(e) => assert_eq!(pieces, Err(Some(e))),
        }
    }
    n
}

fn gen_rule_text(r: &mut Rng, out: &mut String) {
    out.clear();
    for k in 0..1 + r.below(4) {
        if k > 0 {
            out.push_str(r.pick::<&str>(&[" ", "  ", "\t"]));
        }
        let mut v = Vec::new();
        match r.below(7) {
            0..=2 => {
                out.push_str(r.pick::<&str>(&["path_prefix=", "path=", "path_glob="]));
                v.push(b'/');
                r.word(&mut v, b"abc/.-_*?", 0, 12);
                if !out.ends_with("path_glob=") {
                    v.retain(|&b| b != b'?');
                }
            }
            3 => {
                out.push_str("host=");
                if r.chance(30) {
                    v.extend_from_slice(b"*.");
                }
                r.word(&mut v, b"abcXYZ09-.", 1, 10);
            }
            4 | 5 => {
                out.push_str("header=");
                r.word(&mut v, TCHAR, 1, 8);
                if r.chance(60) {
                    v.push(b':');
                    r.word(&mut v, b"ab \"\\:x", 0, 8);
                    while v.last() == Some(&b' ') {
                        v.pop();
                    }
                    if v.get(v.iter().position(|&b| b == b':').unwrap() + 1) == Some(&b' ') {
                        v.insert(v.iter().position(|&b| b == b':').unwrap() + 1, b'x');
                    }
                }
            }
            _ => {
                out.push_str("method=");
                r.word(&mut v, TCHAR, 1, 8);
            }
        }
        if v.iter().any(|b| b" \t\"\\".contains(b)) || r.chance(10) {
            out.push('"');
            for &b in &v {
                if b == b'"' || b == b'\\' {
                    out.push('\\');
                }
                out.push(b as char);
            }
            out.push('"');
        } else {
            out.push_str(std::str::from_utf8(&v).unwrap());
        }
    }
}

fn fuzz_rules(r: &mut Rng, n: usize) -> usize {
    let mut text = String::new();
    let mut out = [0u8; MAX_TEXT];
    for case in 0..n {
        gen_rule_text(r, &mut text);
        let mut bytes = text.clone().into_bytes();
        if case % 3 == 2 {
            let mut b = std::mem::take(&mut bytes);
            mutate(r, &mut b);
            bytes = b;
        }
        let target = r.next();
        let Ok(rule) = Rule::parse(&bytes, target) else {
            assert!(
                case % 3 == 2,
                "valid text refused: {text:?}: {:?}",
                Rule::parse(&bytes, 0)
            );
            continue;
        };
        let len = rule.write_text(&mut out).unwrap();
        let again = Rule::parse(&out[..len], target).unwrap();
        assert_eq!(
            again,
            rule,
            "{text:?} -> {:?}",
            String::from_utf8_lossy(&out[..len])
        );
        let mut out2 = [0u8; MAX_TEXT];
        let len2 = again.write_text(&mut out2).unwrap();
        assert_eq!(&out[..len], &out2[..len2]);
        // Matching agrees with a direct reading of the matchers.
        let mut req = Vec::new();
        req.extend_from_slice(b"GET /");
        r.word(&mut req, b"abc/.-_", 0, 10);
        req.extend_from_slice(b" HTTP/1.1\r\nHost: ");
        r.word(&mut req, b"abcxyz09-.", 1, 10);
        req.extend_from_slice(b"\r\n\r\n");
        let mut h = [Header::EMPTY; 8];
        if let Ok(Status::Complete(q)) = parse_request(&req, &mut h, &Limits::DEFAULT) {
            let path = q.path();
            let expect = rule.matchers().all(|m| match m.kind {
                MatchKind::PathPrefix => path.starts_with(m.pattern),
                MatchKind::Path => path == m.pattern,
                MatchKind::PathGlob => glob_ref(m.pattern, path),
                MatchKind::Method => m.pattern == b"GET",
                MatchKind::Header => q
                    .headers
                    .iter()
                    .any(|x| x.name.eq_ignore_ascii_case(m.pattern)),
                MatchKind::HeaderValue => {
                    let (name, value) = (&m.pattern[..m.name_len], &m.pattern[m.name_len + 1..]);
                    q.headers
                        .iter()
                        .any(|x| x.name.eq_ignore_ascii_case(name) && x.value == value)
                }
                MatchKind::Host => {
                    let host = q.host.unwrap().to_ascii_lowercase();
                    let host = host.strip_suffix(b".").unwrap_or(&host);
                    let p = m.pattern.to_ascii_lowercase();
                    match p.strip_prefix(b"*") {
                        Some(s) => host.len() > s.len() && host.ends_with(s),
                        None => host == &p[..],
                    }
                }
            });
            assert_eq!(
                rule.matches(&q),
                expect,
                "{text:?} on {:?}",
                String::from_utf8_lossy(&req)
            );
        }
        // The linear glob against the recursive reference.
        let (mut gp, mut gs) = (Vec::new(), Vec::new());
        r.word(&mut gp, b"ab*?", 0, 8);
        r.word(&mut gs, b"ab", 0, 12);
        assert_eq!(glob_match(&gp, &gs), glob_ref(&gp, &gs), "{gp:?} {gs:?}");
        let mask = r.next() & r.next();
        let t = TargetText(mask).to_string();
        assert_eq!(parse_target(t.as_bytes()), Ok(mask));
    }
    n
}

/// Reference glob by recursion (exponential, fine for short inputs).
fn glob_ref(p: &[u8], s: &[u8]) -> bool {
    match (p.first(), s.first()) {
        (None, _) => s.is_empty(),
        (Some(b'*'), _) => glob_ref(&p[1..], s) || (!s.is_empty() && glob_ref(p, &s[1..])),
        (Some(&c), Some(&d)) if c == b'?' || c == d => glob_ref(&p[1..], &s[1..]),
        _ => false,
    }
}

fn random_servers(r: &mut Rng, n: usize, max_weight: u32) -> Vec<ServerView> {
    (0..n)
        .map(|i| ServerView {
            id: 1000 + i as u32,
            weight: if r.chance(10) {
                0
            } else {
                (1 + r.below(max_weight as usize)) as u16
            },
            state: *r.pick(&[
                ServerState::Up,
                ServerState::Up,
                ServerState::Up,
                ServerState::Down,
                ServerState::Drain,
            ]),
            active: r.below(50) as u32,
        })
        .collect()
}

fn ok(s: &[ServerView], mask: u64, i: usize) -> bool {
    i < s.len() && mask & (1 << i) != 0 && s[i].state == ServerState::Up && s[i].weight > 0
}

fn fuzz_sched(r: &mut Rng, rounds: usize) -> usize {
    let mut cases = 0;
    for round in 0..rounds {
        let n = 1 + r.below(64);
        let s = random_servers(r, n, if round % 2 == 0 { 10 } else { 65535 });
        let mask = if r.chance(20) { r.next() } else { u64::MAX };
        let any = (0..n).any(|i| ok(&s, mask, i));
        // lc / wlc against a direct minimum.
        let lc = least_conn(&s, mask);
        let want = (0..n)
            .filter(|&i| ok(&s, mask, i))
            .min_by_key(|&i| s[i].active);
        assert_eq!(lc, want);
        let wlc = weighted_least_conn(&s, mask);
        if let Some(w) = wlc {
            for i in (0..n).filter(|&i| ok(&s, mask, i)) {
                // active_w / weight_w <= active_i / weight_i, ties to the lower index.
                let (a, b) = (
                    s[w].active as u64 * s[i].weight as u64,
                    s[i].active as u64 * s[w].weight as u64,
                );
                assert!(a < b || (a == b && w <= i));
            }
        }
        assert_eq!(wlc.is_some(), any);
        cases += 2;
        // sh never picks an ineligible server, and is a function of the address.
        for _ in 0..20 {
            let a = if r.chance(50) {
                IpAddr::from((r.next() as u32).to_be_bytes())
            } else {
                IpAddr::from((r.next() as u128 | (r.next() as u128) << 64).to_be_bytes())
            };
            let p = source_hash(&s, mask, &a);
            assert_eq!(p.is_some(), any);
            assert!(p.is_none_or(|i| ok(&s, mask, i)));
            assert_eq!(source_hash(&s, mask, &a), p);
            cases += 1;
        }
        // rr cycles through exactly the eligible servers.
        let mut rr = RoundRobin::new();
        let eligible: Vec<usize> = (0..n).filter(|&i| ok(&s, mask, i)).collect();
        for k in 0..2 * eligible.len().max(1) {
            let p = rr.pick(&s, mask);
            assert_eq!(p, eligible.get(k % eligible.len().max(1)).copied());
            cases += 1;
        }
        // wrr: never ineligible; shares within 1% of the weights over a long run.
        if round % 20 == 0 && any {
            let mut w = SmoothWrr::new();
            let total: u64 = eligible.iter().map(|&i| s[i].weight as u64).sum();
            let picks = (total * 3).clamp(10_000, 30_000);
            let mut count = vec![0u64; n];
            for _ in 0..picks {
                let p = w.pick(&s, mask).unwrap();
                assert!(ok(&s, mask, p));
                count[p] += 1;
            }
            cases += 1;
            for &i in &eligible {
                let expect = picks as f64 * s[i].weight as f64 / total as f64;
                let err = (count[i] as f64 - expect).abs();
                assert!(
                    err <= picks as f64 * 0.01,
                    "server {i}: {} vs {expect:.1}",
                    count[i]
                );
            }
        }
        // Maglev: every entry eligible, balance within one entry, lookups eligible.
        if round % 5 == 0 {
            let mut t = vec![0u16; *r.pick(&[251usize, 1021, 4093])];
            let m = maglev_build(&s, mask, &mut t).unwrap();
            assert_eq!(m, eligible.len());
            let mut count = vec![0usize; n];
            for &e in &t {
                if m == 0 {
                    assert_eq!(e, u16::MAX);
                } else {
                    assert!(ok(&s, mask, e as usize));
                    count[e as usize] += 1;
                }
            }
            if let Some(share) = t.len().checked_div(m) {
                let lo = eligible.iter().map(|&i| count[i]).min().unwrap();
                let hi = eligible.iter().map(|&i| count[i]).max().unwrap();
                assert!(hi - lo <= 1 && lo >= share);
            }
            let k = r.next().to_le_bytes();
            assert!(maglev_lookup(&t, &s, mask, &k).is_none_or(|i| ok(&s, mask, i)));
            cases += 1;
        }
    }
    cases
}

#[test]
fn l7_fuzz_million() {
    let start = Instant::now();
    let mut r = Rng(0x6861_726b_4c37_2026);
    let req = fuzz_requests(&mut r, 150_000, 300_000);
    let responses = fuzz_responses(&mut r, 100_000);
    let chunked = fuzz_chunked(&mut r, 150_000);
    let rules = fuzz_rules(&mut r, 200_000);
    let sched = fuzz_sched(&mut r, 4_000);
    let total = req + responses + chunked + rules + sched;
    eprintln!(
        "l7_fuzz: {total} cases (requests {req}, responses {responses}, chunked {chunked}, rules {rules}, scheduler {sched}) in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    assert!(total >= 1_000_000, "{total}");
}

#[test]
fn error_codes_cover_the_issue() {
    // Each refusal maps to the status the issue names.
    let l = Limits {
        max_head: 64,
        max_headers: 2,
        max_target: 16,
        max_body: 10,
    };
    let code = |b: &[u8]| -> u16 {
        let mut h = [Header::EMPTY; 4];
        parse_request(b, &mut h, &l).unwrap_err().status()
    };
    assert_eq!(code(b"GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n"), 400);
    assert_eq!(code(b"GET /aaaaaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\n"), 414);
    assert_eq!(
        code(b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n"),
        431
    );
    assert_eq!(code(&[b'a'; 70]), 431);
    assert_eq!(
        code(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n"),
        413
    );
    assert_eq!(
        code(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: br, chunked\r\n\r\n"),
        501
    );
    assert_eq!(code(b"GET / HTTP/3.0\r\n"), 505);
    assert_eq!(code(b"GET / HTTP/1.1\r\nHost: a\r\nExpect: x\r\n\r\n"), 417);
    let mut h = [Header::EMPTY; 4];
    assert_eq!(
        parse_request(
            b"GET / HTTP/1.1\r\nHost: a\r\nX: 1234567890123456789012345678901234567890\r\n\r\n",
            &mut h,
            &l
        ),
        Err(HttpError::HeadTooLarge)
    );
}
