// SPDX-License-Identifier: GPL-2.0

//! HTTP/1.x targets: request and response heads (`http1::parse_request`, `parse_response`,
//! `add_forwarded_for`, `rewrite_response_head`), body framing (`BodyRelay`) fed in arbitrary
//! pieces, and the layer-7 rules (`l7_rules`).

use crate::{within, Input, Splitter};
use hark_proto::http1::{
    add_forwarded_for, find_header, host_name, is_hop_by_hop, is_token, parse_request,
    parse_response, rewrite_response_head, BodyRelay, ChunkLimits, Framing, HeadScan, Header,
    HttpError, Limits, Method, Progress, Request, Response, Status, Version, RESPONSE_HEAD_GROWTH,
};
use hark_proto::l7_rules::{glob_match, parse_target, select, Rule, TargetText, MAX_TEXT};

/// Header array size; larger than every `max_headers` below.
const FIELDS: usize = 72;

/// Head limits from a selector byte: the defaults, or small ones that the fuzzer can reach.
fn head_limits(sel: u8) -> Limits {
    if sel & 0x80 == 0 {
        return Limits::DEFAULT;
    }
    Limits {
        max_head: 16 + usize::from(sel & 0x1f) * 8,
        max_headers: usize::from(sel >> 5 & 3),
        max_target: usize::from(sel & 7) * 3,
        max_body: u64::from(sel & 0x0f) * 100,
    }
}

/// Limits loose enough for a head that a rewrite made longer.
const LOOSE: Limits = Limits {
    max_head: 1 << 20,
    max_headers: FIELDS,
    max_target: 1 << 20,
    max_body: u64::MAX,
};

/// Prefix lengths to re-parse: all of them for short inputs, a spread for long ones.
fn prefixes(len: usize) -> impl Iterator<Item = usize> {
    let step = if len <= 600 { 1 } else { len / 300 };
    (0..len).step_by(step.max(1)).chain(len.checked_sub(1))
}

fn ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn check_fields(headers: &[Header<'_>], buf: &[u8]) {
    for h in headers {
        assert!(is_token(h.name), "field name {:?} is not a token", h.name);
        assert!(within(h.name, buf) && within(h.value, buf));
        assert!(!h.value.contains(&b'\r') && !h.value.contains(&b'\n'));
        assert!(!h.value.first().is_some_and(|&b| ows(b)));
        assert!(!h.value.last().is_some_and(|&b| ows(b)));
    }
}

fn check_request(r: &Request<'_, '_>, buf: &[u8], limits: &Limits) {
    assert!(r.start <= r.head_len && r.head_len <= buf.len());
    assert!(r.head_len <= limits.max_head);
    assert!(buf[..r.start].chunks(2).all(|c| c == b"\r\n"));
    assert!(buf[r.start..r.head_len].ends_with(b"\r\n\r\n"));
    assert!(r.headers.len() <= limits.max_headers);
    assert!(!r.target.is_empty() && r.target.len() <= limits.max_target);
    assert!(within(r.target, &buf[..r.head_len]));
    assert_eq!(
        &buf[r.start..r.start + r.method.as_bytes().len()],
        r.method.as_bytes()
    );
    check_fields(r.headers, &buf[..r.head_len]);
    if r.version == Version::Http11 {
        assert!(r.host.is_some(), "HTTP/1.1 request without host");
    }
    match r.framing {
        Framing::None | Framing::Chunked => {}
        Framing::ContentLength(n) => assert!(n <= limits.max_body),
        f => panic!("request framing {f:?}"),
    }
    if let Some(h) = r.host {
        assert!(host_name(h).len() <= h.len());
    }
    assert!(r.path().len() <= r.target.len() || r.path() == b"/");
}

/// `http1::parse_request` on the input after a limits byte: the answer on a prefix is
/// `Partial` or the answer on the whole input; a complete head keeps its invariants, parses
/// the same alone, and `add_forwarded_for` turns it into a head that parses the same with the
/// client appended to X-Forwarded-For.
/// `HeadScan` fed `buf` in pieces of `step` bytes: a parse it asks for answers what
/// `parse_request` answers on the same bytes (trivially), and it never misses a completion:
/// the first prefix on which the head is complete is parsed.
fn head_scan_agrees(buf: &[u8], limits: &Limits, step: usize) {
    let mut sc = HeadScan::new();
    let mut len = 0;
    while len < buf.len() {
        len = (len + step).min(buf.len());
        let asked = sc.should_parse(&buf[..len], limits.max_head);
        let mut f = [Header::EMPTY; FIELDS];
        match parse_request(&buf[..len], &mut f, limits) {
            Ok(Status::Complete(_)) => {
                assert!(asked, "head complete at {len} but no parse asked");
                return;
            }
            Err(_) if asked => return,
            _ => {}
        }
    }
}

pub fn http_request(data: &[u8]) {
    let mut inp = Input::new(data);
    let limits = head_limits(inp.byte());
    let buf = inp.rest();
    let mut fields = [Header::EMPTY; FIELDS];
    let whole = parse_request(buf, &mut fields, &limits);
    for k in prefixes(buf.len()) {
        let mut f = [Header::EMPTY; FIELDS];
        let part = parse_request(&buf[..k], &mut f, &limits);
        assert!(
            part == Ok(Status::Partial) || part == whole,
            "prefix {k}: {part:?}, whole: {whole:?}"
        );
    }
    head_scan_agrees(buf, &limits, limits.max_head % 7 + 1);
    let r = match whole {
        Ok(Status::Complete(r)) => r,
        Ok(Status::Partial) => {
            assert!(buf.len() < limits.max_head, "partial beyond max_head");
            return;
        }
        Err(e) => {
            assert!(e.response().starts_with(b"HTTP/1.1 "));
            return;
        }
    };
    check_request(&r, buf, &limits);
    let mut f = [Header::EMPTY; FIELDS];
    assert_eq!(
        parse_request(&buf[..r.head_len], &mut f, &limits),
        Ok(Status::Complete(r))
    );

    // X-Forwarded-For as the switch adds it.
    let head = &buf[r.start..r.head_len];
    let client = b"192.0.2.1";
    let mut out = vec![0u8; head.len() + client.len() + 32];
    let n = add_forwarded_for(head, client, &mut out).expect("add_forwarded_for");
    let mut f = [Header::EMPTY; FIELDS];
    let loose = Limits {
        max_target: limits.max_target,
        max_body: limits.max_body,
        ..LOOSE
    };
    let Ok(Status::Complete(x)) = parse_request(&out[..n], &mut f, &loose) else {
        panic!("head with X-Forwarded-For does not parse");
    };
    assert_eq!(x.head_len, n);
    assert_eq!(
        (
            x.method,
            x.target,
            x.version,
            x.host,
            x.framing,
            x.keep_alive
        ),
        (
            r.method,
            r.target,
            r.version,
            r.host,
            r.framing,
            r.keep_alive
        )
    );
    let xff = |h: &Header<'_>| h.name.eq_ignore_ascii_case(b"x-forwarded-for");
    let had = r.headers.iter().any(xff);
    assert_eq!(x.headers.len(), r.headers.len() + usize::from(!had));
    let last = x.headers.iter().rev().find(|h| xff(h)).expect("no XFF");
    assert!(last.value.ends_with(client), "XFF {:?}", last.value);
}

fn request_method(sel: u8) -> Method<'static> {
    match sel & 3 {
        0 => Method::Get,
        1 => Method::Head,
        2 => Method::Connect,
        _ => Method::Post,
    }
}

fn check_response(r: &Response<'_, '_>, buf: &[u8], limits: &Limits) {
    assert!(r.head_len <= buf.len() && r.head_len <= limits.max_head);
    assert!(buf[..r.head_len].ends_with(b"\r\n\r\n"));
    assert!((100..=599).contains(&r.code));
    assert!(r.headers.len() <= limits.max_headers);
    assert!(within(r.reason, &buf[..r.head_len]));
    check_fields(r.headers, &buf[..r.head_len]);
    if matches!(r.framing, Framing::UntilClose | Framing::Tunnel) {
        assert!(!r.keep_alive);
    }
}

/// `http1::parse_response` (limits and request method from the first byte), with the prefix
/// property of [`http_request`]; `rewrite_response_head` on a complete head gives a head that
/// parses to the same status and framing, keeps every end-to-end field in order, drops the
/// hop-by-hop ones, adds the extra line and one `Connection`, and moves the body bytes intact.
pub fn http_response(data: &[u8]) {
    let mut inp = Input::new(data);
    let sel = inp.byte();
    let sel2 = inp.byte();
    let limits = head_limits(sel);
    let method = request_method(sel2);
    let buf = inp.rest();
    let mut fields = [Header::EMPTY; FIELDS];
    let whole = parse_response(buf, &mut fields, &limits, method);
    for k in prefixes(buf.len()) {
        let mut f = [Header::EMPTY; FIELDS];
        let part = parse_response(&buf[..k], &mut f, &limits, method);
        assert!(
            part == Ok(Status::Partial) || part == whole,
            "prefix {k}: {part:?}, whole: {whole:?}"
        );
    }
    let r = match whole {
        Ok(Status::Complete(r)) => r,
        Ok(Status::Partial) => {
            assert!(buf.len() < limits.max_head, "partial beyond max_head");
            return;
        }
        Err(_) => return,
    };
    check_response(&r, buf, &limits);

    let extra: &[u8] = if sel2 & 4 != 0 {
        b"Set-Cookie: hark=s1; Path=/\r\n"
    } else {
        b""
    };
    let mut out = buf.to_vec();
    let len = out.len();
    out.resize(len + RESPONSE_HEAD_GROWTH + extra.len(), 0xee);
    let n = rewrite_response_head(&mut out, len, r.head_len, r.keep_alive, extra)
        .expect("rewrite_response_head");
    assert_eq!(&out[n..n + len - r.head_len], &buf[r.head_len..]);
    let mut f = [Header::EMPTY; FIELDS];
    let Ok(Status::Complete(x)) = parse_response(&out[..n], &mut f, &LOOSE, method) else {
        panic!("rewritten head does not parse");
    };
    assert_eq!(x.head_len, n);
    assert_eq!(
        (x.version, x.code, x.reason, x.framing, x.keep_alive),
        (r.version, r.code, r.reason, r.framing, r.keep_alive)
    );
    let kept: Vec<_> = r
        .headers
        .iter()
        .filter(|h| !is_hop_by_hop(h.name))
        .collect();
    let (conn, rest): (Vec<&Header<'_>>, Vec<&Header<'_>>) = x
        .headers
        .iter()
        .partition(|h| h.name.eq_ignore_ascii_case(b"connection"));
    assert_eq!(conn.len(), 1);
    let want: &[u8] = if r.keep_alive {
        b"keep-alive"
    } else {
        b"close"
    };
    assert_eq!(conn[0].value, want);
    assert_eq!(rest.len(), kept.len() + usize::from(!extra.is_empty()));
    for (a, b) in kept.iter().zip(&rest) {
        assert_eq!((a.name, a.value), (b.name, b.value));
    }
    assert!(!rest.iter().any(|h| is_hop_by_hop(h.name)));
    if !extra.is_empty() {
        assert_eq!(find_header(x.headers, b"set-cookie"), Some(&extra[12..27]));
    }
}

/// Feeds all of `stream` to `relay` in pieces from `split`, then an empty piece; returns the
/// total consumed, whether the body ended and the error, checking each answer.
fn feed_pieces(
    relay: &mut BodyRelay,
    stream: &[u8],
    split: &mut dyn FnMut() -> usize,
) -> (usize, bool, Option<HttpError>) {
    let mut pos = 0;
    let mut total = 0;
    let mut done = false;
    let mut failed = None;
    loop {
        let n = split().min(stream.len() - pos);
        let piece = &stream[pos..pos + n];
        pos += n;
        match relay.feed(piece) {
            Ok(Progress { consumed, done: d }) => {
                assert!(failed.is_none(), "a failed framer recovered");
                assert!(consumed <= piece.len());
                if done {
                    assert!(d && consumed == 0, "input accepted after the end");
                }
                if !d {
                    assert_eq!(consumed, piece.len(), "bytes left over before the end");
                }
                assert_eq!(relay.is_done(), d);
                total += consumed;
                done = d;
            }
            Err(e) => {
                assert!(failed.is_none_or(|f| f == e), "error changed");
                failed = Some(e);
            }
        }
        if pos == stream.len() && (n == 0 || failed.is_some()) {
            break;
        }
    }
    if let Some(e) = failed {
        assert_eq!(
            relay.feed(b"0\r\n\r\n"),
            Err(e),
            "a failed framer recovered"
        );
    }
    (total, done, failed)
}

/// `BodyRelay` for a framing and limits from the first bytes, fed the rest at once, in pieces
/// of pseudo-random sizes (seeded from the input) and byte by byte: every way gives the same
/// consumed length, end and error; no feed consumes more than it was given or anything after
/// the end; a failed decoder stays failed; a finished chunked body ends with CRLF CRLF.
pub fn body_relay(data: &[u8]) {
    let mut inp = Input::new(data);
    let sel = inp.byte();
    let seed = inp.le(4);
    let (framing, limits) = if sel & 0xc0 == 0xc0 {
        (Framing::ContentLength(inp.le(2) * 3), ChunkLimits::DEFAULT)
    } else if sel & 0x80 != 0 {
        let l = ChunkLimits {
            max_ext: usize::from(sel & 7) * 4,
            max_trailer: usize::from(sel >> 3 & 7) * 8,
            max_body: u64::from(sel & 0x3f) * 64,
        };
        (Framing::Chunked, l)
    } else {
        (Framing::Chunked, ChunkLimits::DEFAULT)
    };
    let stream = inp.rest();

    let mut one = BodyRelay::new(framing, limits);
    let whole = one.feed(stream);
    let (consumed, done, err) = match whole {
        Ok(p) => (p.consumed, p.done, None),
        Err(e) => (0, false, Some(e)),
    };
    assert!(consumed <= stream.len());
    if let Ok(p) = whole {
        if !p.done {
            assert_eq!(p.consumed, stream.len());
        }
        assert_eq!(one.is_done(), p.done);
    } else {
        assert_eq!(one.feed(b"0\r\n\r\n"), whole, "a failed framer recovered");
    }
    match framing {
        Framing::ContentLength(n) => {
            assert_eq!(consumed as u64, n.min(stream.len() as u64));
            assert_eq!(done, stream.len() as u64 >= n);
        }
        _ if done => assert!(stream[..consumed].ends_with(b"\r\n\r\n")),
        _ => {}
    }

    let mut s = Splitter::new(seed);
    let mut pieces = BodyRelay::new(framing, limits);
    let got = feed_pieces(&mut pieces, stream, &mut || s.piece());
    check_split(got, (consumed, done, err), &pieces, &one);
    if stream.len() <= 4096 {
        let mut bytes = BodyRelay::new(framing, limits);
        let got = feed_pieces(&mut bytes, stream, &mut || 1);
        check_split(got, (consumed, done, err), &bytes, &one);
    }
}

fn check_split(
    got: (usize, bool, Option<HttpError>),
    want: (usize, bool, Option<HttpError>),
    relay: &BodyRelay,
    reference: &BodyRelay,
) {
    match want.2 {
        // The error is the same; how much came before it is not reported.
        Some(e) => assert_eq!(got.2, Some(e), "split changed the outcome"),
        None => {
            assert_eq!(got, want, "split changed the outcome");
            if let (BodyRelay::Chunked(a), BodyRelay::Chunked(b)) = (relay, reference) {
                assert_eq!(a.body_bytes(), b.body_bytes());
            }
        }
    }
}

/// Layer-7 rules: `Rule::parse` then `write_text` reads back as the same rule, a target list
/// written by `TargetText` reads back as the same mask, and a rule (text up to the first NUL)
/// applied to a request (after it) does not fail; glob patterns match themselves and `*`
/// matches everything.
pub fn l7_rules(data: &[u8]) {
    let mut inp = Input::new(data);
    let target = inp.le(8);
    let rest = inp.rest();
    let (text, req) = match rest.iter().position(|&b| b == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };

    if let Ok(mask) = parse_target(text) {
        let t = TargetText(mask).to_string();
        assert_eq!(parse_target(t.as_bytes()), Ok(mask), "target {t:?}");
    }
    let _ = glob_match(text, req);
    assert!(glob_match(b"*", text));
    if !text.contains(&b'*') && !text.contains(&b'?') {
        assert!(glob_match(text, text));
    }

    let Ok(rule) = Rule::parse(text, target) else {
        return;
    };
    assert_eq!(rule.target, target);
    let mut out = [0u8; MAX_TEXT];
    let n = rule.write_text(&mut out).expect("rule text fits MAX_TEXT");
    let again = Rule::parse(&out[..n], target).expect("written rule parses");
    assert!(
        again.matchers().eq(rule.matchers()),
        "{rule} became {again}"
    );

    let mut fields = [Header::EMPTY; FIELDS];
    if let Ok(Status::Complete(r)) = parse_request(req, &mut fields, &Limits::DEFAULT) {
        let rules = [rule, again];
        let s = select(&rules, 1, &r);
        assert_eq!(rule.matches(&r), s.rule == Some(0));
        assert_eq!(rule.matches(&r), again.matches(&r));
    }
}
