// SPDX-License-Identifier: GPL-2.0

//! HTTP/1.0 and HTTP/1.1 message heads and bodies (RFC 9110 semantics, RFC 9112 syntax) for the
//! layer-7 switch `ktcpvs_rs`: an incremental request-head parser, a response-head parser, an
//! incremental body framer (Content-Length and chunked) and a header inserter for
//! `X-Forwarded-For`. Nothing allocates; parsed items borrow the caller's buffer.
//!
//! The switch relays heads and bodies verbatim, so the parser is strict wherever two HTTP
//! implementations could disagree about where a message ends (request smuggling): it rejects
//! obs-fold, bare CR, bare LF, whitespace before a field's colon, invalid token characters,
//! duplicate Host fields, conflicting or malformed Content-Length, Content-Length together with
//! Transfer-Encoding, Transfer-Encoding in HTTP/1.0 and any transfer coding list whose final
//! coding is not `chunked`. Empty lines before the request line are skipped (RFC 9112 §2.2).
//!
//! Incremental use: call [`parse_request`] again on the grown buffer whenever bytes arrive; it
//! answers [`Status::Partial`] until the head is complete. Every check runs in byte order, so an
//! answer other than `Partial` on a prefix of a message is the answer on the whole message.
//!
//! All arithmetic is checked (the bytes come from clients and servers; an overflow in the
//! kernel module is an oops): positions within a buffer use `saturating_add`, which cannot
//! saturate below `usize::MAX` since a buffer is at most `isize::MAX` bytes long.

#![deny(clippy::arithmetic_side_effects)]

/// Limits applied while parsing a head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest head in bytes, empty lines before the request line and the final CRLF included
    /// (exceeding it: [`HttpError::HeadTooLarge`], 431).
    pub max_head: usize,
    /// Most header field lines (exceeding it or the caller's array: 431).
    pub max_headers: usize,
    /// Longest request-target in bytes (exceeding it: [`HttpError::TargetTooLong`], 414).
    pub max_target: usize,
    /// Largest request body announced by Content-Length or carried chunked (exceeding it:
    /// [`HttpError::ContentTooLarge`], 413).
    pub max_body: u64,
}

impl Limits {
    /// 8 KiB heads, 64 fields, 4 KiB targets, 1 GiB bodies.
    pub const DEFAULT: Limits = Limits {
        max_head: 8192,
        max_headers: 64,
        max_target: 4096,
        max_body: 1 << 30,
    };
}

/// Result of an incremental parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status<T> {
    /// The head is not complete yet: read more bytes and call again with the whole buffer.
    Partial,
    /// The head is complete; `T` carries its length (`head_len`).
    Complete(T),
}

/// One header field line. Both parts borrow the parsed buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header<'a> {
    /// Field name as received (a token; compare case-insensitively).
    pub name: &'a [u8],
    /// Field value without leading and trailing whitespace.
    pub value: &'a [u8],
}

impl Header<'static> {
    /// An empty header, to initialise the caller's array.
    pub const EMPTY: Header<'static> = Header {
        name: b"",
        value: b"",
    };
}

/// Request method (RFC 9110 §9; case-sensitive).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method<'a> {
    /// `GET`.
    Get,
    /// `HEAD`.
    Head,
    /// `POST`.
    Post,
    /// `PUT`.
    Put,
    /// `DELETE`.
    Delete,
    /// `CONNECT`.
    Connect,
    /// `OPTIONS`.
    Options,
    /// `TRACE`.
    Trace,
    /// `PATCH` (RFC 5789).
    Patch,
    /// Any other method token.
    Other(&'a [u8]),
}

const METHODS: [(&[u8], Method<'static>); 9] = [
    (b"GET", Method::Get),
    (b"HEAD", Method::Head),
    (b"POST", Method::Post),
    (b"PUT", Method::Put),
    (b"DELETE", Method::Delete),
    (b"CONNECT", Method::Connect),
    (b"OPTIONS", Method::Options),
    (b"TRACE", Method::Trace),
    (b"PATCH", Method::Patch),
];

impl<'a> Method<'a> {
    /// The method for a token (the caller has checked it is a token).
    pub fn from_token(t: &'a [u8]) -> Method<'a> {
        for (name, m) in METHODS {
            if name == t {
                return m;
            }
        }
        Method::Other(t)
    }

    /// The method's token.
    pub fn as_bytes(&self) -> &'a [u8] {
        match self {
            Method::Other(t) => t,
            m => {
                for (name, k) in METHODS {
                    if k == *m {
                        return name;
                    }
                }
                b""
            }
        }
    }
}

/// Protocol version of a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// `HTTP/1.0`.
    Http10,
    /// `HTTP/1.1`, or a later 1.x, handled as 1.1 (RFC 9110 §6.2).
    Http11,
}

/// Form of a request-target (RFC 9112 §3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetForm {
    /// `/path?query`.
    Origin,
    /// `scheme://authority/path?query`.
    Absolute,
    /// `host:port`, only with CONNECT.
    Authority,
    /// `*`, only with OPTIONS.
    Asterisk,
}

/// How the body of a message is delimited (RFC 9112 §6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    None,
    /// Exactly this many bytes.
    ContentLength(u64),
    /// Chunked transfer coding, ended by the last chunk and the trailer section.
    Chunked,
    /// Responses only: the body runs until the server closes the connection.
    UntilClose,
    /// Responses only (101, 2xx to CONNECT): the connection becomes a tunnel.
    Tunnel,
}

/// Why a message was refused. [`HttpError::status`] is the status code to answer a client with
/// when the error is in its request; an error in a server's response is answered with 502.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpError {
    /// Malformed request line or status line.
    BadStartLine,
    /// Invalid character in the method.
    BadMethod,
    /// Invalid request-target, or a form the method does not allow.
    BadTarget,
    /// Request-target longer than [`Limits::max_target`] (414).
    TargetTooLong,
    /// Malformed HTTP-version.
    BadVersion,
    /// Major version other than 1 (505).
    VersionNotSupported,
    /// Head longer than [`Limits::max_head`], or an output buffer too small for it (431).
    HeadTooLarge,
    /// More header lines than allowed (431).
    TooManyHeaders,
    /// Invalid or empty field name.
    BadHeaderName,
    /// Whitespace between a field name and its colon.
    WhitespaceBeforeColon,
    /// Control character in a field value.
    BadHeaderValue,
    /// Line folding (a field line starting with whitespace).
    ObsFold,
    /// CR not followed by LF.
    BareCr,
    /// LF not preceded by CR.
    BareLf,
    /// HTTP/1.1 request without Host.
    MissingHost,
    /// More than one Host field line.
    DuplicateHost,
    /// Host (or the target's authority) is not a valid `host[:port]`.
    BadHost,
    /// Content-Length that is not a decimal number that fits 64 bits.
    BadContentLength,
    /// Content-Length values that differ.
    ConflictingContentLength,
    /// Both Content-Length and Transfer-Encoding.
    ContentLengthWithTransferEncoding,
    /// Transfer-Encoding in an HTTP/1.0 request.
    TransferEncodingInHttp10,
    /// Transfer-Encoding whose final coding is not `chunked`, `chunked` applied twice, or an
    /// empty or malformed coding list.
    BadTransferEncoding,
    /// A transfer coding this server does not implement (501).
    UnsupportedTransferEncoding,
    /// An expectation other than `100-continue` (417).
    ExpectationFailed,
    /// Body larger than [`Limits::max_body`] (413).
    ContentTooLarge,
    /// Malformed chunk size line, chunk data not followed by CRLF, size overflow.
    BadChunk,
    /// Chunk extensions or trailer section over the decoder's limits.
    ChunkMetadataTooLong,
}

impl HttpError {
    /// Status code to send to a client whose request caused the error.
    pub const fn status(self) -> u16 {
        match self {
            HttpError::TargetTooLong => 414,
            HttpError::HeadTooLarge | HttpError::TooManyHeaders => 431,
            HttpError::VersionNotSupported => 505,
            HttpError::UnsupportedTransferEncoding => 501,
            HttpError::ExpectationFailed => 417,
            HttpError::ContentTooLarge => 413,
            _ => 400,
        }
    }

    /// A complete response for [`HttpError::status`] that closes the connection.
    pub const fn response(self) -> &'static [u8] {
        error_response(self.status())
    }
}

/// A complete, body-less response closing the connection for the status codes the switch
/// generates (400, 413, 414, 417, 431, 501, 502, 503, 504, 505); any other code gives the 500
/// response.
pub const fn error_response(status: u16) -> &'static [u8] {
    macro_rules! resp {
        ($l:literal) => {
            concat!(
                "HTTP/1.1 ",
                $l,
                "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            .as_bytes()
        };
    }
    match status {
        400 => resp!("400 Bad Request"),
        413 => resp!("413 Content Too Large"),
        414 => resp!("414 URI Too Long"),
        417 => resp!("417 Expectation Failed"),
        431 => resp!("431 Request Header Fields Too Large"),
        501 => resp!("501 Not Implemented"),
        502 => resp!("502 Bad Gateway"),
        503 => resp!("503 Service Unavailable"),
        504 => resp!("504 Gateway Timeout"),
        505 => resp!("505 HTTP Version Not Supported"),
        _ => resp!("500 Internal Server Error"),
    }
}

/// A parsed request head.
///
/// Invariants: `start <= head_len <= buf.len()`, `buf[start..head_len]` is the request line and
/// the field lines up to and including the empty line; `host` is `Some` for every HTTP/1.1
/// request; `framing` is [`Framing::None`], [`Framing::ContentLength`] or [`Framing::Chunked`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request<'a, 'h> {
    /// The method.
    pub method: Method<'a>,
    /// The request-target as received.
    pub target: &'a [u8],
    /// The form of `target`.
    pub form: TargetForm,
    /// The version.
    pub version: Version,
    /// The header field lines in order.
    pub headers: &'h [Header<'a>],
    /// The authority: from an absolute-form or authority-form target, else from Host (it may
    /// carry a port; see [`host_name`]). `None` only for HTTP/1.0 without either.
    pub host: Option<&'a [u8]>,
    /// How the body is delimited.
    pub framing: Framing,
    /// Whether the connection may carry another request after this one.
    pub keep_alive: bool,
    /// The client waits for `100 Continue` before sending the body (ignored for HTTP/1.0).
    pub expect_continue: bool,
    /// Offset of the request line (after skipped empty lines).
    pub start: usize,
    /// Length of the head from the start of the buffer, final CRLF included.
    pub head_len: usize,
}

impl<'a> Request<'a, '_> {
    /// The path: the target without query (the path of an absolute-form target, `/` when it
    /// is empty; the whole target for the authority and asterisk forms).
    pub fn path(&self) -> &'a [u8] {
        let t = match self.form {
            TargetForm::Origin => self.target,
            TargetForm::Absolute => {
                let rest = after_scheme(self.target);
                let a = rest
                    .iter()
                    .position(|&b| b == b'/' || b == b'?')
                    .unwrap_or(rest.len());
                &rest[a..]
            }
            TargetForm::Authority | TargetForm::Asterisk => return self.target,
        };
        let p = &t[..t.iter().position(|&b| b == b'?').unwrap_or(t.len())];
        if p.is_empty() {
            b"/"
        } else {
            p
        }
    }

    /// The value of the first field line called `name` (case-insensitive).
    pub fn header(&self, name: &[u8]) -> Option<&'a [u8]> {
        find_header(self.headers, name)
    }
}

/// The value of the first field line in `headers` called `name` (case-insensitive).
pub fn find_header<'a>(headers: &[Header<'a>], name: &[u8]) -> Option<&'a [u8]> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value)
}

/// The host part of an authority: without `:port`, without one trailing dot; an IPv6 literal
/// keeps its brackets.
pub fn host_name(authority: &[u8]) -> &[u8] {
    let mut h = authority;
    if let Some(c) = h.iter().rposition(|&b| b == b':') {
        if !h[c..].contains(&b']') {
            h = &h[..c];
        }
    }
    if let [rest @ .., b'.'] = h {
        h = rest;
    }
    h
}

/// A parsed response head.
///
/// Invariants: `head_len <= buf.len()`; `100 <= code <= 599`; `keep_alive` is false for
/// [`Framing::UntilClose`] and [`Framing::Tunnel`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Response<'a, 'h> {
    /// The version.
    pub version: Version,
    /// The status code.
    pub code: u16,
    /// The reason phrase (possibly empty).
    pub reason: &'a [u8],
    /// The header field lines in order.
    pub headers: &'h [Header<'a>],
    /// How the body is delimited (1xx other than 101: no body, the final response follows).
    pub framing: Framing,
    /// Whether the server connection may carry another request afterwards.
    pub keep_alive: bool,
    /// Length of the head, final CRLF included.
    pub head_len: usize,
}

impl Response<'_, '_> {
    /// An interim response (1xx other than 101): another head follows on the connection.
    pub fn is_interim(&self) -> bool {
        self.code < 200 && self.code != 101
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Whether `t` is a token (RFC 9110 §5.6.2): one or more `tchar`.
pub fn is_token(t: &[u8]) -> bool {
    !t.is_empty() && t.iter().all(|&b| is_tchar(b))
}

/// Bytes allowed in a request-target: visible ASCII except `#` (no fragments on the wire).
fn is_target_char(b: u8) -> bool {
    (0x21..0x7f).contains(&b) && b != b'#'
}

/// Field-value bytes: SP, HTAB, VCHAR, obs-text.
fn is_value_char(b: u8) -> bool {
    b == b' ' || b == b'\t' || (0x21..0x7f).contains(&b) || b >= 0x80
}

fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// Length of the scheme of an absolute URI if `t` starts with `scheme://`.
fn scheme_len(t: &[u8]) -> Option<usize> {
    let n = t.iter().position(|&b| b == b':')?;
    let ok = n > 0
        && t[0].is_ascii_alphabetic()
        && t[..n]
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        && t[n..].starts_with(b"://");
    ok.then_some(n)
}

/// The part of an absolute URI after `scheme://` (empty if `t` is not one).
fn after_scheme(t: &[u8]) -> &[u8] {
    scheme_len(t)
        .and_then(|n| t[n..].strip_prefix(b"://"))
        .unwrap_or(&[])
}

/// The value of an ASCII decimal digit.
fn digit(b: u8) -> Option<u8> {
    b.is_ascii_digit().then_some(b & 0x0f)
}

/// Checks `host [":" port]` (RFC 3986 §3.2.2; an empty host is accepted).
fn valid_authority(a: &[u8]) -> bool {
    let (host, port) = if let Some(rest) = a.strip_prefix(b"[") {
        let Some(e) = rest.iter().position(|&b| b == b']') else {
            return false;
        };
        let (lit, port) = rest.split_at(e);
        if lit.is_empty()
            || !lit
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return false;
        }
        (&b""[..], &port[1..])
    } else {
        let e = a.iter().position(|&b| b == b':').unwrap_or(a.len());
        (&a[..e], &a[e..])
    };
    let host_ok = host
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=".contains(&b));
    let port_ok = match port {
        [] => true,
        [b':', digits @ ..] => digits.iter().all(u8::is_ascii_digit),
        _ => false,
    };
    host_ok && port_ok
}

/// Reads byte `i` for a byte-order scan: 431 beyond the head limit, `None` beyond the buffer.
fn byte_at(buf: &[u8], i: usize, limits: &Limits) -> Result<Option<u8>, HttpError> {
    if i >= limits.max_head {
        Err(HttpError::HeadTooLarge)
    } else {
        Ok(buf.get(i).copied())
    }
}

/// Matches "HTTP/" DIGIT "." DIGIT at `i`; `Ok(None)` when the buffer ends first.
fn scan_version(buf: &[u8], i: usize, limits: &Limits) -> Result<Option<Version>, HttpError> {
    const PAT: &[u8; 8] = b"HTTP/9.9";
    let mut digits = [0u8; 2];
    for (k, &p) in PAT.iter().enumerate() {
        let Some(b) = byte_at(buf, i.saturating_add(k), limits)? else {
            return Ok(None);
        };
        if p == b'9' {
            // The digits are at k = 5 and 7.
            digits[usize::from(k == 7)] = digit(b).ok_or(HttpError::BadVersion)?;
        } else if b != p {
            return Err(HttpError::BadVersion);
        }
    }
    match digits {
        [1, 0] => Ok(Some(Version::Http10)),
        [1, _] => Ok(Some(Version::Http11)),
        _ => Err(HttpError::VersionNotSupported),
    }
}

/// Expects CR LF at `i`; `Ok(false)` when the buffer ends first.
fn scan_crlf(buf: &[u8], i: usize, limits: &Limits) -> Result<bool, HttpError> {
    match byte_at(buf, i, limits)? {
        None => return Ok(false),
        Some(b'\r') => {}
        Some(b'\n') => return Err(HttpError::BareLf),
        Some(_) => return Err(HttpError::BadStartLine),
    }
    match byte_at(buf, i.saturating_add(1), limits)? {
        None => Ok(false),
        Some(b'\n') => Ok(true),
        Some(_) => Err(HttpError::BareCr),
    }
}

/// What the field lines said about framing and the connection.
#[derive(Default)]
struct Facts<'a> {
    /// Parsing a response: Host and Expect mean nothing there.
    response: bool,
    hosts: usize,
    host: Option<&'a [u8]>,
    content_length: Option<u64>,
    te_seen: bool,
    te_chunked_last: bool,
    te_bad: bool,
    te_unknown: bool,
    close: bool,
    keep_alive: bool,
    expect_continue: bool,
    expect_other: bool,
}

impl<'a> Facts<'a> {
    fn field(&mut self, name: &[u8], value: &'a [u8]) -> Result<(), HttpError> {
        let is = |n: &[u8]| name.eq_ignore_ascii_case(n);
        if self.response && (is(b"host") || is(b"expect")) {
            return Ok(());
        }
        if is(b"host") {
            self.hosts = self.hosts.saturating_add(1);
            if !valid_authority(value) {
                return Err(HttpError::BadHost);
            }
            self.host = Some(value);
        } else if is(b"content-length") {
            for e in value.split(|&b| b == b',') {
                let n = parse_decimal(trim_ows(e)).ok_or(HttpError::BadContentLength)?;
                if self.content_length.is_some_and(|o| o != n) {
                    return Err(HttpError::ConflictingContentLength);
                }
                self.content_length = Some(n);
            }
        } else if is(b"transfer-encoding") {
            self.te_seen = true;
            for e in value.split(|&b| b == b',').map(trim_ows) {
                if e.is_empty() {
                    continue;
                }
                let name = trim_ows(&e[..e.iter().position(|&b| b == b';').unwrap_or(e.len())]);
                // Anything after `chunked` means it is not the final coding (or is repeated).
                self.te_bad |= self.te_chunked_last;
                self.te_chunked_last = name.eq_ignore_ascii_case(b"chunked");
                if self.te_chunked_last {
                    self.te_bad |= name.len() != e.len();
                } else if !is_token(name) {
                    self.te_bad = true;
                } else if ![
                    &b"gzip"[..],
                    b"x-gzip",
                    b"deflate",
                    b"compress",
                    b"x-compress",
                ]
                .iter()
                .any(|k| name.eq_ignore_ascii_case(k))
                {
                    self.te_unknown = true;
                }
            }
        } else if is(b"connection") {
            for e in value.split(|&b| b == b',').map(trim_ows) {
                self.close |= e.eq_ignore_ascii_case(b"close");
                self.keep_alive |= e.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if is(b"expect") {
            for e in value.split(|&b| b == b',').map(trim_ows) {
                if e.eq_ignore_ascii_case(b"100-continue") {
                    self.expect_continue = true;
                } else if !e.is_empty() {
                    self.expect_other = true;
                }
            }
        }
        Ok(())
    }

    fn keep_alive(&self, v: Version) -> bool {
        !self.close && (v == Version::Http11 || self.keep_alive)
    }
}

/// Parses `1*DIGIT` into a u64.
fn parse_decimal(d: &[u8]) -> Option<u64> {
    if d.is_empty() {
        return None;
    }
    d.iter().try_fold(0u64, |acc, &b| {
        acc.checked_mul(10)?.checked_add(u64::from(digit(b)?))
    })
}

/// Parses field lines from `pos` up to and including the empty line. Returns the number of
/// headers and the head length, or `None` when the buffer ends first.
fn parse_fields<'a>(
    buf: &'a [u8],
    mut pos: usize,
    headers: &mut [Header<'a>],
    limits: &Limits,
    facts: &mut Facts<'a>,
) -> Result<Option<(usize, usize)>, HttpError> {
    let max = headers.len().min(limits.max_headers);
    let mut n = 0;
    loop {
        let rest = buf.get(pos..).unwrap_or(&[]);
        let Some(k) = rest.iter().position(|&b| b == b'\n') else {
            return if buf.len() >= limits.max_head {
                Err(HttpError::HeadTooLarge)
            } else {
                Ok(None)
            };
        };
        let lf = pos.saturating_add(k);
        if lf >= limits.max_head {
            return Err(HttpError::HeadTooLarge);
        }
        let Some(line) = rest[..k].strip_suffix(b"\r") else {
            return Err(HttpError::BareLf);
        };
        pos = lf.saturating_add(1);
        if line.is_empty() {
            return Ok(Some((n, pos)));
        }
        if line[0] == b' ' || line[0] == b'\t' {
            return Err(HttpError::ObsFold);
        }
        let colon = line
            .iter()
            .position(|&b| !is_tchar(b))
            .unwrap_or(line.len());
        match line.get(colon) {
            Some(b':') if colon > 0 => {}
            Some(b' ' | b'\t') if colon > 0 => return Err(HttpError::WhitespaceBeforeColon),
            Some(b'\r') => return Err(HttpError::BareCr),
            _ => return Err(HttpError::BadHeaderName),
        }
        let (name, value) = line.split_at(colon);
        let value = &value[1..];
        if let Some(&bad) = value.iter().find(|&&b| !is_value_char(b)) {
            return Err(if bad == b'\r' {
                HttpError::BareCr
            } else {
                HttpError::BadHeaderValue
            });
        }
        if n == max {
            return Err(HttpError::TooManyHeaders);
        }
        let h = Header {
            name,
            value: trim_ows(value),
        };
        facts.field(h.name, h.value)?;
        headers[n] = h;
        n = n.saturating_add(1);
    }
}

/// Parses a request head at the start of `buf` into `headers`.
///
/// Returns [`Status::Partial`] while the head is incomplete (and within limits), else the
/// request, whose `head_len` is where the body (or the next request) starts.
pub fn parse_request<'a, 'h>(
    buf: &'a [u8],
    headers: &'h mut [Header<'a>],
    limits: &Limits,
) -> Result<Status<Request<'a, 'h>>, HttpError> {
    // Empty lines before the request line.
    let mut start = 0;
    loop {
        match byte_at(buf, start, limits)? {
            None => return Ok(Status::Partial),
            Some(b'\r') => match byte_at(buf, start.saturating_add(1), limits)? {
                None => return Ok(Status::Partial),
                Some(b'\n') => start = start.saturating_add(2),
                Some(_) => return Err(HttpError::BareCr),
            },
            Some(b'\n') => return Err(HttpError::BareLf),
            Some(_) => break,
        }
    }
    // method SP
    let mut i = start;
    loop {
        match byte_at(buf, i, limits)? {
            None => return Ok(Status::Partial),
            Some(b' ') if i > start => break,
            Some(b) if is_tchar(b) => i = i.saturating_add(1),
            Some(_) => return Err(HttpError::BadMethod),
        }
    }
    let method = Method::from_token(&buf[start..i]);
    // request-target SP
    let t0 = i.saturating_add(1);
    let mut j = t0;
    loop {
        let b = byte_at(buf, j, limits)?;
        if j.saturating_sub(t0) == limits.max_target && b != Some(b' ') && b.is_some() {
            return Err(HttpError::TargetTooLong);
        }
        match b {
            None => return Ok(Status::Partial),
            Some(b' ') if j > t0 => break,
            Some(b) if is_target_char(b) => j = j.saturating_add(1),
            Some(b'\r' | b'\n') => return Err(HttpError::BadStartLine),
            Some(_) => return Err(HttpError::BadTarget),
        }
    }
    let target = &buf[t0..j];
    // SP "HTTP/x.y" CRLF
    let Some(version) = scan_version(buf, j.saturating_add(1), limits)? else {
        return Ok(Status::Partial);
    };
    if !scan_crlf(buf, j.saturating_add(9), limits)? {
        return Ok(Status::Partial);
    }
    let mut facts = Facts::default();
    let fields = j.saturating_add(11);
    let Some((n, head_len)) = parse_fields(buf, fields, headers, limits, &mut facts)? else {
        return Ok(Status::Partial);
    };

    let form = match (target[0], method) {
        (b'/', _) => TargetForm::Origin,
        (b'*', Method::Options) if target.len() == 1 => TargetForm::Asterisk,
        (_, Method::Connect) => TargetForm::Authority,
        _ if scheme_len(target).is_some() => TargetForm::Absolute,
        _ => return Err(HttpError::BadTarget),
    };
    if (method == Method::Connect) != (form == TargetForm::Authority) {
        return Err(HttpError::BadTarget);
    }
    if facts.hosts > 1 {
        return Err(HttpError::DuplicateHost);
    }
    if version == Version::Http11 && facts.hosts == 0 {
        return Err(HttpError::MissingHost);
    }
    let mut host = facts.host;
    if form == TargetForm::Authority {
        if target.is_empty() || !valid_authority(target) {
            return Err(HttpError::BadTarget);
        }
        host = Some(target);
    } else if form == TargetForm::Absolute {
        let rest = after_scheme(target);
        let a = &rest[..rest
            .iter()
            .position(|&b| b == b'/' || b == b'?')
            .unwrap_or(rest.len())];
        if a.is_empty() || a.contains(&b'@') || !valid_authority(a) {
            return Err(HttpError::BadTarget);
        }
        host = Some(a);
    }
    let framing = if facts.te_seen {
        if version == Version::Http10 {
            return Err(HttpError::TransferEncodingInHttp10);
        }
        if facts.content_length.is_some() {
            return Err(HttpError::ContentLengthWithTransferEncoding);
        }
        if facts.te_bad || !facts.te_chunked_last {
            return Err(HttpError::BadTransferEncoding);
        }
        if facts.te_unknown {
            return Err(HttpError::UnsupportedTransferEncoding);
        }
        Framing::Chunked
    } else if let Some(len) = facts.content_length {
        if len > limits.max_body {
            return Err(HttpError::ContentTooLarge);
        }
        Framing::ContentLength(len)
    } else {
        Framing::None
    };
    let http11 = version == Version::Http11;
    if http11 && facts.expect_other {
        return Err(HttpError::ExpectationFailed);
    }
    let headers: &'h [Header<'a>] = headers;
    Ok(Status::Complete(Request {
        method,
        target,
        form,
        version,
        headers: &headers[..n],
        host,
        framing,
        keep_alive: facts.keep_alive(version),
        expect_continue: http11 && facts.expect_continue,
        start,
        head_len,
    }))
}

/// When to call [`parse_request`] on a buffer that grows as bytes arrive, so that a head
/// trickled in small pieces costs O(n) in all instead of a parse of the whole buffer per
/// piece (O(n²)).
///
/// [`HeadScan::should_parse`] looks only at the bytes that are new since its previous call and
/// says yes when a parse can give a new answer soon enough: the new bytes hold the end of a
/// head (a line feed, after the empty lines that may precede the request line, followed by
/// an empty line or a bare line feed), the buffer doubled since the last parse (so garbage or
/// a bad request line is answered at once when it comes in one piece, and at most one
/// doubling late when trickled), or it reached `max_head`. Answers stay exact: what a parse
/// answers is what [`parse_request`] answers on these bytes, and since its checks run in byte
/// order a head that completed in the new bytes is always seen complete at once; only an
/// error may be found later than with a parse per piece (when the buffer doubles, is full,
/// or the head ends).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeadScan {
    /// Bytes of the buffer already looked at.
    seen: usize,
    /// Length of the buffer at the last parse (0: none yet).
    parsed: usize,
    /// Length of the CR LF pairs at the start (empty lines before the request line).
    lead: usize,
    /// Something other than an empty line came after `lead`.
    lead_done: bool,
}

impl HeadScan {
    /// A scan of an empty buffer.
    pub const fn new() -> Self {
        HeadScan {
            seen: 0,
            parsed: 0,
            lead: 0,
            lead_done: false,
        }
    }

    /// Whether `buf` (the buffer of the previous call with bytes appended, or a first buffer)
    /// should be parsed now. A `true` answer counts as a parse of `buf`.
    pub fn should_parse(&mut self, buf: &[u8], max_head: usize) -> bool {
        self.skip_lead(buf);
        let from = self.seen.min(buf.len());
        self.seen = buf.len();
        let end = from < buf.len() && self.head_end_in(buf, from);
        let grown = buf.len() >= self.parsed.saturating_mul(2) && buf.len() > self.parsed;
        if end || grown || buf.len() >= max_head {
            self.parsed = buf.len();
            return true;
        }
        false
    }

    /// Extends `lead` over the CR LF pairs at the start of `buf`.
    fn skip_lead(&mut self, buf: &[u8]) {
        while !self.lead_done {
            match (buf.get(self.lead), buf.get(self.lead.saturating_add(1))) {
                (Some(b'\r'), Some(b'\n')) => self.lead = self.lead.saturating_add(2),
                (None, _) | (Some(b'\r'), None) => return,
                _ => self.lead_done = true,
            }
        }
    }

    /// Whether a line feed at `from..` ends an empty line (or is a bare one) after a line
    /// feed that lies beyond the leading empty lines.
    fn head_end_in(&self, buf: &[u8], from: usize) -> bool {
        if !self.lead_done {
            return false;
        }
        (from..buf.len()).any(|k| {
            let at = |d: usize| k.checked_sub(d).and_then(|i| buf.get(i).map(|&b| (i, b)));
            let prev_lf = match (at(1), at(2)) {
                (Some((i, b'\n')), _) => Some(i),
                (Some((_, b'\r')), Some((i, b'\n'))) => Some(i),
                _ => None,
            };
            buf[k] == b'\n' && prev_lf.is_some_and(|i| i >= self.lead)
        })
    }
}

/// Parses a response head at the start of `buf`; `request` is the method of the request it
/// answers (HEAD and CONNECT change the framing).
pub fn parse_response<'a, 'h>(
    buf: &'a [u8],
    headers: &'h mut [Header<'a>],
    limits: &Limits,
    request: Method<'_>,
) -> Result<Status<Response<'a, 'h>>, HttpError> {
    let Some(version) = scan_version(buf, 0, limits)? else {
        return Ok(Status::Partial);
    };
    let mut code = 0u16;
    for i in 8..12 {
        let Some(b) = byte_at(buf, i, limits)? else {
            return Ok(Status::Partial);
        };
        match (i, digit(b)) {
            (8, _) if b == b' ' => {}
            // Three digits: at most 999.
            (9..=11, Some(d)) => code = code.saturating_mul(10).saturating_add(u16::from(d)),
            _ => return Err(HttpError::BadStartLine),
        }
    }
    if !(100..=599).contains(&code) {
        return Err(HttpError::BadStartLine);
    }
    // [SP reason-phrase] CRLF
    let mut i = 12;
    loop {
        match byte_at(buf, i, limits)? {
            None => return Ok(Status::Partial),
            Some(b'\r') => break,
            Some(b' ') if i == 12 => i = 13,
            Some(b) if i > 12 && is_value_char(b) => i = i.saturating_add(1),
            Some(b'\n') => return Err(HttpError::BareLf),
            Some(_) => return Err(HttpError::BadStartLine),
        }
    }
    let reason = &buf[13.min(i)..i];
    if !scan_crlf(buf, i, limits)? {
        return Ok(Status::Partial);
    }
    let mut facts = Facts {
        response: true,
        ..Facts::default()
    };
    let fields = i.saturating_add(2);
    let Some((n, head_len)) = parse_fields(buf, fields, headers, limits, &mut facts)? else {
        return Ok(Status::Partial);
    };
    let mut keep_alive = facts.keep_alive(version);
    let framing = if code == 101 || (request == Method::Connect && (200..300).contains(&code)) {
        Framing::Tunnel
    } else if code < 200 || code == 204 || code == 304 || request == Method::Head {
        Framing::None
    } else if facts.te_seen {
        if facts.content_length.is_some() {
            return Err(HttpError::ContentLengthWithTransferEncoding);
        }
        if facts.te_chunked_last && !facts.te_bad && version == Version::Http11 {
            Framing::Chunked
        } else {
            Framing::UntilClose
        }
    } else if let Some(len) = facts.content_length {
        Framing::ContentLength(len)
    } else {
        Framing::UntilClose
    };
    if matches!(framing, Framing::UntilClose | Framing::Tunnel) {
        keep_alive = false;
    }
    let headers: &'h [Header<'a>] = headers;
    Ok(Status::Complete(Response {
        version,
        code,
        reason,
        headers: &headers[..n],
        framing,
        keep_alive,
        head_len,
    }))
}

/// Limits of the chunked decoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkLimits {
    /// Most bytes after the size digits of one chunk line (extensions).
    pub max_ext: usize,
    /// Most bytes of the trailer section (all lines, CRLFs included).
    pub max_trailer: usize,
    /// Most body bytes (chunk data) in all ([`HttpError::ContentTooLarge`]).
    pub max_body: u64,
}

impl ChunkLimits {
    /// 256 bytes of extensions per chunk, 4 KiB of trailers, 1 GiB of body.
    pub const DEFAULT: ChunkLimits = ChunkLimits {
        max_ext: 256,
        max_trailer: 4096,
        max_body: 1 << 30,
    };
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chunk {
    /// Reading size digits (count so far).
    Size(u8),
    /// Whitespace after the size: `;` must follow.
    ExtWs,
    /// In the extensions, up to CR.
    Ext,
    SizeLf,
    Data(u64),
    DataCr,
    DataLf,
    TrailerStart,
    Trailer,
    TrailerLf,
    EndLf,
    Done,
}

/// Incremental decoder of a chunked body (RFC 9112 §7.1) that only delimits it: it tells how
/// many bytes of each input belong to the body so that they can be forwarded verbatim.
///
/// Invariant: after an error the decoder stays failed (every later call returns an error).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkedDecoder {
    state: Chunk,
    size: u64,
    meta: usize,
    body: u64,
    failed: Option<HttpError>,
    limits: ChunkLimits,
}

/// Outcome of feeding bytes to a body framer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// How many leading bytes of the input belong to the body (all of them unless `done`).
    pub consumed: usize,
    /// The body (for chunked: with its trailer section) has ended.
    pub done: bool,
}

impl ChunkedDecoder {
    /// A decoder at the start of a chunked body.
    pub const fn new(limits: ChunkLimits) -> Self {
        ChunkedDecoder {
            state: Chunk::Size(0),
            size: 0,
            meta: 0,
            body: 0,
            failed: None,
            limits,
        }
    }

    /// Whether the body has ended.
    pub fn is_done(&self) -> bool {
        self.state == Chunk::Done
    }

    /// Chunk data bytes seen so far.
    pub fn body_bytes(&self) -> u64 {
        self.body
    }

    /// Feeds the next bytes of the connection.
    pub fn feed(&mut self, input: &[u8]) -> Result<Progress, HttpError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let r = self.run(input);
        if let Err(e) = r {
            self.failed = Some(e);
        }
        r
    }

    fn run(&mut self, input: &[u8]) -> Result<Progress, HttpError> {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            self.state = match self.state {
                Chunk::Done => break,
                Chunk::Data(n) => {
                    // `take` <= the bytes left in `input`, and <= `n`.
                    let take = n.min(input[i..].len() as u64);
                    i = i.saturating_add(take as usize);
                    self.state = if take == n {
                        Chunk::DataCr
                    } else {
                        Chunk::Data(n.saturating_sub(take))
                    };
                    continue;
                }
                Chunk::Size(d) => match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' if d < 16 => {
                        let v = (b as char).to_digit(16).unwrap_or(0);
                        self.size = (self.size << 4) | u64::from(v);
                        Chunk::Size(d.saturating_add(1))
                    }
                    _ if d == 0 || b.is_ascii_hexdigit() => return Err(HttpError::BadChunk),
                    b'\r' => Chunk::SizeLf,
                    b';' => self.meta(Chunk::Ext)?,
                    b' ' | b'\t' => self.meta(Chunk::ExtWs)?,
                    b'\n' => return Err(HttpError::BareLf),
                    _ => return Err(HttpError::BadChunk),
                },
                Chunk::ExtWs => match b {
                    b' ' | b'\t' => self.meta(Chunk::ExtWs)?,
                    b';' => self.meta(Chunk::Ext)?,
                    _ => return Err(HttpError::BadChunk),
                },
                Chunk::Ext => match b {
                    b'\r' => Chunk::SizeLf,
                    b'\n' => return Err(HttpError::BareLf),
                    b if is_value_char(b) => self.meta(Chunk::Ext)?,
                    _ => return Err(HttpError::BadChunk),
                },
                Chunk::SizeLf => match b {
                    b'\n' if self.size == 0 => {
                        self.meta = 0;
                        Chunk::TrailerStart
                    }
                    b'\n' => {
                        // A total past u64::MAX is no length at all: a malformed body (400
                        // from a client, 502 from a server), not one over the limit.
                        self.body = self
                            .body
                            .checked_add(self.size)
                            .ok_or(HttpError::BadChunk)?;
                        if self.body > self.limits.max_body {
                            return Err(HttpError::ContentTooLarge);
                        }
                        let n = self.size;
                        self.size = 0;
                        self.meta = 0;
                        Chunk::Data(n)
                    }
                    _ => return Err(HttpError::BareCr),
                },
                Chunk::DataCr => match b {
                    b'\r' => Chunk::DataLf,
                    _ => return Err(HttpError::BadChunk),
                },
                Chunk::DataLf | Chunk::TrailerLf | Chunk::EndLf if b != b'\n' => {
                    return Err(HttpError::BareCr)
                }
                Chunk::DataLf => Chunk::Size(0),
                Chunk::TrailerLf => self.meta(Chunk::TrailerStart)?,
                Chunk::EndLf => Chunk::Done,
                Chunk::TrailerStart | Chunk::Trailer => match b {
                    b'\r' if self.state == Chunk::TrailerStart => Chunk::EndLf,
                    b'\r' => self.meta(Chunk::TrailerLf)?,
                    b'\n' => return Err(HttpError::BareLf),
                    b' ' | b'\t' if self.state == Chunk::TrailerStart => {
                        return Err(HttpError::ObsFold)
                    }
                    b if is_value_char(b) => self.meta(Chunk::Trailer)?,
                    _ => return Err(HttpError::BadHeaderValue),
                },
            };
            i = i.saturating_add(1);
        }
        Ok(Progress {
            consumed: i,
            done: self.state == Chunk::Done,
        })
    }

    /// Counts one byte of chunk extensions or trailers against the limits.
    fn meta(&mut self, next: Chunk) -> Result<Chunk, HttpError> {
        self.meta = self.meta.saturating_add(1);
        let max = match next {
            Chunk::Ext | Chunk::ExtWs => self.limits.max_ext,
            _ => self.limits.max_trailer,
        };
        if self.meta > max {
            return Err(HttpError::ChunkMetadataTooLong);
        }
        Ok(next)
    }
}

/// Delimits a message body of any [`Framing`] while it is relayed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyRelay {
    /// This many bytes are left.
    Length(u64),
    /// A chunked body.
    Chunked(ChunkedDecoder),
    /// Everything until the peer closes (close-delimited responses, tunnels).
    UntilClose,
}

impl BodyRelay {
    /// A relay for a body with `framing`.
    pub const fn new(framing: Framing, limits: ChunkLimits) -> Self {
        match framing {
            Framing::None => BodyRelay::Length(0),
            Framing::ContentLength(n) => BodyRelay::Length(n),
            Framing::Chunked => BodyRelay::Chunked(ChunkedDecoder::new(limits)),
            Framing::UntilClose | Framing::Tunnel => BodyRelay::UntilClose,
        }
    }

    /// Whether the body has ended (never for [`BodyRelay::UntilClose`]).
    pub fn is_done(&self) -> bool {
        match self {
            BodyRelay::Length(n) => *n == 0,
            BodyRelay::Chunked(d) => d.is_done(),
            BodyRelay::UntilClose => false,
        }
    }

    /// Feeds the next bytes of the connection.
    pub fn feed(&mut self, input: &[u8]) -> Result<Progress, HttpError> {
        match self {
            BodyRelay::Length(n) => {
                let take = (*n).min(input.len() as u64);
                *n = n.saturating_sub(take);
                Ok(Progress {
                    consumed: take as usize,
                    done: *n == 0,
                })
            }
            BodyRelay::Chunked(d) => d.feed(input),
            BodyRelay::UntilClose => Ok(Progress {
                consumed: input.len(),
                done: false,
            }),
        }
    }
}

/// Copies a complete head (`head` ends with the empty line, as from `buf[start..head_len]`)
/// into `out` with the field line `name: value` added before the empty line. Returns the new
/// length. `name` must be a token and `value` valid field-value bytes.
pub fn insert_header(
    head: &[u8],
    name: &[u8],
    value: &[u8],
    out: &mut [u8],
) -> Result<usize, HttpError> {
    if !is_token(name) {
        return Err(HttpError::BadHeaderName);
    }
    let body = head.strip_suffix(b"\r\n").ok_or(HttpError::BadStartLine)?;
    splice(out, &[body, name, b": ", value, b"\r\n\r\n"], value)
}

/// Copies a complete head into `out` with `client` (the client's address in text form)
/// appended to X-Forwarded-For: to the last such field line if there is one (so that the
/// combined list ends with `client`), else in a new line before the empty line. Returns the
/// new length.
pub fn add_forwarded_for(head: &[u8], client: &[u8], out: &mut [u8]) -> Result<usize, HttpError> {
    let mut last = None;
    let mut pos = 0;
    while let Some(k) = head[pos..].iter().position(|&b| b == b'\n') {
        let line = &head[pos..][..k];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let name = b"x-forwarded-for:";
        if line.len() >= name.len() && line[..name.len()].eq_ignore_ascii_case(name) {
            let sep: &[u8] = if trim_ows(&line[name.len()..]).is_empty() {
                b" "
            } else {
                b", "
            };
            last = Some((pos.saturating_add(line.len()), sep));
        }
        pos = pos.saturating_add(k).saturating_add(1);
    }
    match last {
        Some((at, sep)) => splice(out, &[&head[..at], sep, client, &head[at..]], client),
        None => insert_header(head, b"X-Forwarded-For", client, out),
    }
}

/// Whether a field is hop-by-hop for the switch (RFC 9110 §7.6.1): `Connection`, `Keep-Alive`,
/// `Proxy-Connection` and `Upgrade` are never relayed; the switch writes its own `Connection`.
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    [
        &b"connection"[..],
        b"keep-alive",
        b"proxy-connection",
        b"upgrade",
    ]
    .iter()
    .any(|h| name.eq_ignore_ascii_case(h))
}

/// Most bytes [`rewrite_response_head`] adds to a head (`Connection: keep-alive` and CRLF).
pub const RESPONSE_HEAD_GROWTH: usize = b"Connection: keep-alive\r\n".len();

/// Rewrites, in place, the response head `buf[..head_len]` (complete, as accepted by
/// [`parse_response`]) for the client: every hop-by-hop field line ([`is_hop_by_hop`]) is
/// dropped, and `extra` (whole field lines, each ending in CRLF, such as a `Set-Cookie` the
/// switch adds) then `Connection: keep-alive` (`keep_alive`) or `Connection: close` are added
/// before the empty line. The bytes read after the head, `buf[head_len..len]`, move with it.
/// Returns the new head length; the content is then `buf[..len - head_len + new_head_len]`.
///
/// Fails with [`HttpError::HeadTooLarge`] when `buf` has no room for the result (at most
/// [`RESPONSE_HEAD_GROWTH`] + `extra.len()` more bytes than `len` are needed),
/// [`HttpError::BadStartLine`] when `buf[..head_len]` is not a head (`head_len <= len <=
/// buf.len()` is required too) and [`HttpError::BadHeaderValue`] when `extra` is not field
/// lines of visible characters.
pub fn rewrite_response_head(
    buf: &mut [u8],
    len: usize,
    head_len: usize,
    keep_alive: bool,
    extra: &[u8],
) -> Result<usize, HttpError> {
    if head_len > len || len > buf.len() || !buf[..head_len].ends_with(b"\r\n\r\n") {
        return Err(HttpError::BadStartLine);
    }
    if !is_field_lines(extra) {
        return Err(HttpError::BadHeaderValue);
    }
    // Where the line starting at `from` ends, after its CRLF (all within `head_len`).
    let next_line = |buf: &[u8], from: usize| -> Result<usize, HttpError> {
        let k = buf[from..head_len]
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or(HttpError::BadStartLine)?;
        Ok(from.saturating_add(k).saturating_add(2))
    };
    // The status line stays.
    let mut w = next_line(buf, 0)?;
    let mut r = w;
    loop {
        let e = next_line(buf, r)?;
        let line = &buf[r..e];
        if line == b"\r\n" {
            // The empty line.
            break;
        }
        let name = &line[..line.iter().position(|&b| b == b':').unwrap_or(line.len())];
        if !is_hop_by_hop(name) {
            let n = line.len();
            buf.copy_within(r..e, w);
            w = w.saturating_add(n);
        }
        r = e;
    }
    let field: &[u8] = if keep_alive {
        b"Connection: keep-alive\r\n"
    } else {
        b"Connection: close\r\n"
    };
    // `w` <= `head_len` <= `len`: the tail still fits where it was.
    let rest = len.saturating_sub(head_len);
    let new_head = [extra.len(), field.len(), 2]
        .iter()
        .try_fold(w, |n, &l| n.checked_add(l))
        .filter(|&n| n.checked_add(rest).is_some_and(|end| end <= buf.len()))
        .ok_or(HttpError::HeadTooLarge)?;
    // The body bytes first: their new place does not overlap `buf[..new_head]`.
    buf.copy_within(head_len..len, new_head);
    splice(&mut buf[w..new_head], &[extra, field, b"\r\n"], b"")?;
    Ok(new_head)
}

/// Whether `b` is zero or more whole field lines (`name: value` CRLF, visible characters).
fn is_field_lines(mut b: &[u8]) -> bool {
    while !b.is_empty() {
        let Some(e) = b.windows(2).position(|w| w == b"\r\n") else {
            return false;
        };
        let line = &b[..e];
        let colon = line.iter().position(|&c| c == b':');
        if !colon.is_some_and(|c| is_token(&line[..c])) || !line.iter().all(|&c| is_value_char(c)) {
            return false;
        }
        b = &b[e..][2..];
    }
    true
}

/// Concatenates `parts` into `out` after checking that `value` is a valid field value.
fn splice(out: &mut [u8], parts: &[&[u8]], value: &[u8]) -> Result<usize, HttpError> {
    if value.iter().any(|&b| !is_value_char(b)) {
        return Err(HttpError::BadHeaderValue);
    }
    let mut n = 0usize;
    for p in parts {
        let end = n.checked_add(p.len()).ok_or(HttpError::HeadTooLarge)?;
        out.get_mut(n..end)
            .ok_or(HttpError::HeadTooLarge)?
            .copy_from_slice(p);
        n = end;
    }
    Ok(n)
}

#[cfg(test)]
// Host tests: their arithmetic is on known values, and an overflow fails the test.
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    extern crate std;
    use super::*;

    type Summary<'a> = (Method<'a>, Framing, bool, Option<&'a [u8]>, usize);

    fn req(buf: &[u8]) -> Result<Status<Summary<'_>>, HttpError> {
        let mut h = [Header::EMPTY; 16];
        parse_request(buf, &mut h, &Limits::DEFAULT).map(|s| match s {
            Status::Partial => Status::Partial,
            Status::Complete(r) => {
                Status::Complete((r.method, r.framing, r.keep_alive, r.host, r.head_len))
            }
        })
    }

    fn complete<'a, 'h>(b: &'a [u8], h: &'h mut [Header<'a>]) -> Request<'a, 'h> {
        match parse_request(b, h, &Limits::DEFAULT) {
            Ok(Status::Complete(r)) => r,
            x => panic!("{x:?}"),
        }
    }

    fn err(buf: &[u8]) -> HttpError {
        req(buf).unwrap_err()
    }

    #[test]
    fn simple_get() {
        let b = b"GET /a/b?x=1 HTTP/1.1\r\nHost: Example.COM:8080\r\nAccept: */*\r\n\r\nNEXT";
        let mut h = [Header::EMPTY; 4];
        let r = complete(b, &mut h);
        assert_eq!(r.method, Method::Get);
        assert_eq!(r.target, b"/a/b?x=1");
        assert_eq!(r.path(), b"/a/b");
        assert_eq!(r.form, TargetForm::Origin);
        assert_eq!(r.version, Version::Http11);
        assert_eq!(r.headers.len(), 2);
        assert_eq!(r.header(b"ACCEPT"), Some(&b"*/*"[..]));
        assert_eq!(r.host, Some(&b"Example.COM:8080"[..]));
        assert_eq!(host_name(r.host.unwrap()), b"Example.COM");
        assert_eq!(r.framing, Framing::None);
        assert!(r.keep_alive && !r.expect_continue);
        assert_eq!((r.start, r.head_len), (0, b.len() - 4));
    }

    #[test]
    fn every_prefix_is_partial() {
        let b = b"\r\n\r\nPOST /u HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n";
        for n in 0..b.len() {
            assert_eq!(req(&b[..n]), Ok(Status::Partial), "prefix {n}");
        }
        let Ok(Status::Complete((m, f, _, _, len))) = req(b) else {
            panic!()
        };
        assert_eq!(
            (m, f, len),
            (Method::Post, Framing::ContentLength(5), b.len())
        );
    }

    #[test]
    fn keep_alive_rules() {
        let ka = |b: &[u8]| match req(b) {
            Ok(Status::Complete(r)) => r.2,
            x => panic!("{x:?}"),
        };
        assert!(ka(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
        assert!(!ka(b"GET / HTTP/1.0\r\n\r\n"));
        assert!(ka(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
        assert!(!ka(
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade, CLOSE\r\n\r\n"
        ));
        assert!(!ka(
            b"GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n"
        ));
        assert!(ka(b"GET / HTTP/1.2\r\nHost: a\r\n\r\n"));
    }

    #[test]
    fn host_rules() {
        assert_eq!(err(b"GET / HTTP/1.1\r\n\r\n"), HttpError::MissingHost);
        assert_eq!(
            err(b"GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n"),
            HttpError::DuplicateHost
        );
        assert_eq!(
            err(b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n"),
            HttpError::BadHost
        );
        assert_eq!(
            err(b"GET / HTTP/1.1\r\nHost: a:8x\r\n\r\n"),
            HttpError::BadHost
        );
        let r = req(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        assert!(matches!(r, Status::Complete((_, _, _, None, _))));
        // Absolute form: the target's authority wins over Host.
        let b = b"GET http://api.example:81/p?q HTTP/1.1\r\nHost: other\r\n\r\n";
        let mut h = [Header::EMPTY; 4];
        let r = complete(b, &mut h);
        assert_eq!(
            (r.form, r.host, r.path()),
            (
                TargetForm::Absolute,
                Some(&b"api.example:81"[..]),
                &b"/p"[..]
            )
        );
        assert_eq!(
            err(b"GET http://u@h/ HTTP/1.1\r\nHost: h\r\n\r\n"),
            HttpError::BadTarget
        );
        assert_eq!(
            err(b"GET http:/// HTTP/1.1\r\nHost: h\r\n\r\n"),
            HttpError::BadTarget
        );
        let r = req(b"GET http://h HTTP/1.0\r\n\r\n").unwrap();
        assert!(matches!(r, Status::Complete((_, _, _, Some(b"h"), _))));
        // IPv6 literal.
        assert_eq!(host_name(b"[::1]:80"), b"[::1]");
        assert_eq!(host_name(b"[::1]"), b"[::1]");
        assert_eq!(host_name(b"example.com."), b"example.com");
        assert!(req(b"GET / HTTP/1.1\r\nHost: [2001:db8::1]:8080\r\n\r\n").is_ok());
        // Forms bound to methods.
        assert!(req(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n").is_ok());
        assert_eq!(
            err(b"GET * HTTP/1.1\r\nHost: a\r\n\r\n"),
            HttpError::BadTarget
        );
        let r = req(b"CONNECT a.b:443 HTTP/1.1\r\nHost: a.b:443\r\n\r\n").unwrap();
        assert!(matches!(
            r,
            Status::Complete((Method::Connect, _, _, Some(b"a.b:443"), _))
        ));
        assert_eq!(
            err(b"CONNECT /x HTTP/1.1\r\nHost: a\r\n\r\n"),
            HttpError::BadTarget
        );
        assert_eq!(
            err(b"GET a.b:443 HTTP/1.1\r\nHost: a\r\n\r\n"),
            HttpError::BadTarget
        );
    }

    #[test]
    fn framing_and_smuggling() {
        let f = |b: &[u8]| match req(b) {
            Ok(Status::Complete(r)) => Ok(r.1),
            Ok(Status::Partial) => panic!("partial"),
            Err(e) => Err(e),
        };
        let h = "POST / HTTP/1.1\r\nHost: a\r\n";
        let with = |extra: &str| {
            let mut s = [0u8; 256];
            let t = [h.as_bytes(), extra.as_bytes(), b"\r\n"].concat_into(&mut s);
            f(&s[..t])
        };
        assert_eq!(
            with("Content-Length: 42\r\n"),
            Ok(Framing::ContentLength(42))
        );
        assert_eq!(
            with("Content-Length: 42\r\nContent-Length: 42\r\n"),
            Ok(Framing::ContentLength(42))
        );
        assert_eq!(
            with("Content-Length: 42, 42\r\n"),
            Ok(Framing::ContentLength(42))
        );
        assert_eq!(
            with("Content-Length: 42\r\nContent-Length: 43\r\n"),
            Err(HttpError::ConflictingContentLength)
        );
        assert_eq!(
            with("Content-Length: 42, 43\r\n"),
            Err(HttpError::ConflictingContentLength)
        );
        assert_eq!(
            with("Content-Length: +42\r\n"),
            Err(HttpError::BadContentLength)
        );
        assert_eq!(
            with("Content-Length: 0x10\r\n"),
            Err(HttpError::BadContentLength)
        );
        assert_eq!(
            with("Content-Length: \r\n"),
            Err(HttpError::BadContentLength)
        );
        assert_eq!(
            with("Content-Length: 99999999999999999999\r\n"),
            Err(HttpError::BadContentLength)
        );
        assert_eq!(
            with("Content-Length: 18446744073709551615\r\n"),
            Err(HttpError::ContentTooLarge)
        );
        assert_eq!(with("Transfer-Encoding: chunked\r\n"), Ok(Framing::Chunked));
        assert_eq!(
            with("Transfer-Encoding: gzip, CHUNKED\r\n"),
            Ok(Framing::Chunked)
        );
        assert_eq!(
            with("Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n"),
            Ok(Framing::Chunked)
        );
        assert_eq!(
            with("Transfer-Encoding: chunked\r\nContent-Length: 3\r\n"),
            Err(HttpError::ContentLengthWithTransferEncoding)
        );
        assert_eq!(
            with("Transfer-Encoding: gzip\r\n"),
            Err(HttpError::BadTransferEncoding)
        );
        assert_eq!(
            with("Transfer-Encoding: chunked, gzip\r\n"),
            Err(HttpError::BadTransferEncoding)
        );
        assert_eq!(
            with("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"),
            Err(HttpError::BadTransferEncoding)
        );
        assert_eq!(
            with("Transfer-Encoding: chunked;x=1\r\n"),
            Err(HttpError::BadTransferEncoding)
        );
        assert_eq!(
            with("Transfer-Encoding: xchunked\r\n"),
            Err(HttpError::BadTransferEncoding)
        );
        assert_eq!(
            with("Transfer-Encoding: \r\n"),
            Err(HttpError::BadTransferEncoding)
        );
        assert_eq!(
            with("Transfer-Encoding: br, chunked\r\n"),
            Err(HttpError::UnsupportedTransferEncoding)
        );
        assert_eq!(HttpError::UnsupportedTransferEncoding.status(), 501);
        assert_eq!(
            err(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            HttpError::TransferEncodingInHttp10
        );
        // Syntax that parsers disagree on.
        assert_eq!(
            with("Content-Length : 5\r\n"),
            Err(HttpError::WhitespaceBeforeColon)
        );
        assert_eq!(with("X: a\r\n b\r\n"), Err(HttpError::ObsFold));
        assert_eq!(with("X: a\rb\r\n"), Err(HttpError::BareCr));
        assert_eq!(with("X: a\nY: b\r\n"), Err(HttpError::BareLf));
        assert_eq!(with("X\x01: a\r\n"), Err(HttpError::BadHeaderName));
        assert_eq!(with(": a\r\n"), Err(HttpError::BadHeaderName));
        assert_eq!(with("X a\r\n"), Err(HttpError::WhitespaceBeforeColon));
        assert_eq!(with("X: a\x00\r\n"), Err(HttpError::BadHeaderValue));
        assert_eq!(with("X: a\x7f\r\n"), Err(HttpError::BadHeaderValue));
        assert_eq!(with("X: café \t\r\n"), Ok(Framing::None));
        assert_eq!(
            err(b"GET / HTTP/1.1\r\n Host: a\r\n\r\n"),
            HttpError::ObsFold
        );
    }

    trait ConcatInto {
        fn concat_into(&self, out: &mut [u8]) -> usize;
    }
    impl ConcatInto for [u8] {
        fn concat_into(&self, out: &mut [u8]) -> usize {
            out[..self.len()].copy_from_slice(self);
            self.len()
        }
    }
    impl<const N: usize> ConcatInto for [&[u8]; N] {
        fn concat_into(&self, out: &mut [u8]) -> usize {
            let mut n = 0;
            for p in self {
                n += p.concat_into(&mut out[n..]);
            }
            n
        }
    }

    #[test]
    fn request_line_errors_and_limits() {
        assert_eq!(err(b"G@T / HTTP/1.1\r\n"), HttpError::BadMethod);
        assert_eq!(err(b" GET / HTTP/1.1\r\n"), HttpError::BadMethod);
        assert_eq!(err(b"GET  / HTTP/1.1\r\n"), HttpError::BadTarget);
        assert_eq!(err(b"GET /a\x01 HTTP/1.1\r\n"), HttpError::BadTarget);
        assert_eq!(err(b"GET /a#f HTTP/1.1\r\n"), HttpError::BadTarget);
        assert_eq!(err(b"GET /\r\n"), HttpError::BadStartLine);
        assert_eq!(err(b"GET / HTTP/1.1 \r\n"), HttpError::BadStartLine);
        assert_eq!(err(b"GET / http/1.1\r\n"), HttpError::BadVersion);
        assert_eq!(err(b"GET / HTTP/1.10\r\n"), HttpError::BadStartLine);
        assert_eq!(err(b"GET / HTTP/2.0\r\n"), HttpError::VersionNotSupported);
        assert_eq!(HttpError::VersionNotSupported.status(), 505);
        assert_eq!(err(b"GET / HTTP/0.9\r\n"), HttpError::VersionNotSupported);
        assert_eq!(err(b"GET / HTTP/1.1\n"), HttpError::BareLf);
        assert_eq!(err(b"GET / HTTP/1.1\rX"), HttpError::BareCr);
        assert_eq!(err(b"\r\r\nGET / HTTP/1.1\r\n"), HttpError::BareCr);
        assert_eq!(err(b"\nGET / HTTP/1.1\r\n"), HttpError::BareLf);
        let mut h = [Header::EMPTY; 2];
        let l = Limits {
            max_head: 40,
            max_headers: 2,
            max_target: 8,
            max_body: 100,
        };
        let p = |b: &[u8]| {
            let mut h = [Header::EMPTY; 2];
            parse_request(b, &mut h, &l).map(|s| s == Status::Partial)
        };
        // 8 bytes of target are fine, the 9th is 414 at once, before the line ends.
        assert_eq!(p(b"GET /2345678 HTTP/1.1\r\n"), Ok(true));
        assert_eq!(p(b"GET /23456789"), Err(HttpError::TargetTooLong));
        assert_eq!(HttpError::TargetTooLong.status(), 414);
        assert_eq!(
            p(b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n"),
            Err(HttpError::TooManyHeaders)
        );
        // 40 bytes exactly fit; one more does not.
        let fit = b"GET / HTTP/1.1\r\nHost: a\r\nX: 12345678\r\n\r\n";
        assert_eq!(fit.len(), 40);
        assert_eq!(p(fit), Ok(false));
        let over = b"GET / HTTP/1.1\r\nHost: a\r\nX: 123456789\r\n\r\n";
        assert_eq!(p(over), Err(HttpError::HeadTooLarge));
        assert_eq!(p(&over[..40]), Err(HttpError::HeadTooLarge));
        assert_eq!(p(&over[..39]), Ok(true));
        assert_eq!(
            p(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 101\r\n\r\n"),
            Err(HttpError::HeadTooLarge)
        );
        let l2 = Limits {
            max_body: 100,
            ..Limits::DEFAULT
        };
        let b = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 101\r\n\r\n";
        assert_eq!(
            parse_request(b, &mut h, &l2),
            Err(HttpError::ContentTooLarge)
        );
        assert_eq!(HttpError::ContentTooLarge.status(), 413);
        // Too many empty lines count against the head limit.
        assert_eq!(
            p(&[b'\r', b'\n'].repeat_into::<40>()),
            Err(HttpError::HeadTooLarge)
        );
    }

    trait RepeatInto {
        fn repeat_into<const N: usize>(&self) -> [u8; N];
    }
    impl RepeatInto for [u8; 2] {
        fn repeat_into<const N: usize>(&self) -> [u8; N] {
            core::array::from_fn(|i| self[i % 2])
        }
    }

    #[test]
    fn expect() {
        let b = b"PUT /f HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n";
        let mut h = [Header::EMPTY; 4];
        let r = complete(b, &mut h);
        assert!(r.expect_continue);
        let b = b"PUT /f HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n";
        let r = complete(b, &mut h);
        assert!(!r.expect_continue);
        assert_eq!(
            err(b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: teapot\r\n\r\n"),
            HttpError::ExpectationFailed
        );
        assert_eq!(HttpError::ExpectationFailed.status(), 417);
    }

    #[test]
    fn methods() {
        for (t, m) in METHODS {
            assert_eq!(Method::from_token(t), m);
            assert_eq!(m.as_bytes(), t);
        }
        assert_eq!(Method::from_token(b"get"), Method::Other(b"get"));
        assert_eq!(Method::Other(b"PROPFIND").as_bytes(), b"PROPFIND");
    }

    fn resp(b: &[u8], m: Method<'_>) -> Result<(u16, Framing, bool, usize), HttpError> {
        let mut h = [Header::EMPTY; 8];
        match parse_response(b, &mut h, &Limits::DEFAULT, m)? {
            Status::Complete(r) => Ok((r.code, r.framing, r.keep_alive, r.head_len)),
            Status::Partial => Err(HttpError::BadChunk),
        }
    }

    #[test]
    fn responses() {
        let b = b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n";
        assert_eq!(
            resp(b, Method::Get),
            Ok((200, Framing::ContentLength(12), true, b.len()))
        );
        assert_eq!(
            resp(b, Method::Head),
            Ok((200, Framing::None, true, b.len()))
        );
        for n in 0..b.len() {
            let mut h = [Header::EMPTY; 8];
            assert_eq!(
                parse_response(&b[..n], &mut h, &Limits::DEFAULT, Method::Get),
                Ok(Status::Partial)
            );
        }
        let b = b"HTTP/1.1 100 Continue\r\n\r\n";
        let mut h = [Header::EMPTY; 8];
        let Status::Complete(r) = parse_response(b, &mut h, &Limits::DEFAULT, Method::Put).unwrap()
        else {
            panic!()
        };
        assert!(r.is_interim() && r.framing == Framing::None && r.reason == b"Continue");
        assert_eq!(
            resp(
                b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
                Method::Get
            )
            .unwrap()
            .1,
            Framing::None
        );
        assert_eq!(
            resp(b"HTTP/1.1 304 \r\n\r\n", Method::Get).unwrap().1,
            Framing::None
        );
        assert_eq!(
            resp(b"HTTP/1.1 200\r\n\r\n", Method::Get),
            Ok((200, Framing::UntilClose, false, 16))
        );
        assert_eq!(
            resp(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                Method::Get
            )
            .unwrap()
            .1,
            Framing::Chunked
        );
        assert_eq!(
            resp(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
                Method::Get
            )
            .unwrap()
            .1,
            Framing::UntilClose
        );
        assert!(
            !resp(b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", Method::Get)
                .unwrap()
                .2
        );
        assert!(
            resp(
                b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n",
                Method::Get
            )
            .unwrap()
            .2
        );
        assert!(
            !resp(
                b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n",
                Method::Get
            )
            .unwrap()
            .2
        );
        assert_eq!(
            resp(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
                Method::Get
            )
            .unwrap()
            .1,
            Framing::Tunnel
        );
        assert_eq!(
            resp(b"HTTP/1.1 200 OK\r\n\r\n", Method::Connect).unwrap().1,
            Framing::Tunnel
        );
        assert_eq!(
            resp(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n",
                Method::Get
            ),
            Err(HttpError::ContentLengthWithTransferEncoding)
        );
        assert_eq!(
            resp(b"HTTP/1.1 99 X\r\n\r\n", Method::Get),
            Err(HttpError::BadStartLine)
        );
        assert_eq!(
            resp(b"HTTP/1.1 600 X\r\n\r\n", Method::Get),
            Err(HttpError::BadStartLine)
        );
        assert_eq!(
            resp(b"HTTP/1.1 2000 X\r\n\r\n", Method::Get),
            Err(HttpError::BadStartLine)
        );
        assert_eq!(
            resp(
                b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n",
                Method::Get
            ),
            Err(HttpError::ConflictingContentLength)
        );
    }

    fn prog(consumed: usize, done: bool) -> Result<Progress, HttpError> {
        Ok(Progress { consumed, done })
    }

    fn feed_all(d: &mut ChunkedDecoder, b: &[u8]) -> Result<Progress, HttpError> {
        d.feed(b)
    }

    #[test]
    fn chunked() {
        let body = b"4\r\nWiki\r\n5;ext=\"a b\"\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-T: 1\r\n\r\nGET";
        let mut d = ChunkedDecoder::new(ChunkLimits::DEFAULT);
        assert_eq!(feed_all(&mut d, body), prog(body.len() - 3, true));
        assert_eq!(d.body_bytes(), 4 + 5 + 14);
        assert_eq!(d.feed(b"more"), prog(0, true));
        // Byte by byte gives the same.
        let mut d = ChunkedDecoder::new(ChunkLimits::DEFAULT);
        for (i, b) in body.iter().enumerate() {
            let p = d.feed(core::slice::from_ref(b)).unwrap();
            assert_eq!(p.done, i >= body.len() - 4, "{i}");
            assert_eq!(p.consumed, usize::from(i < body.len() - 3));
        }
        let bad = |b: &[u8]| {
            ChunkedDecoder::new(ChunkLimits {
                max_ext: 8,
                max_trailer: 16,
                max_body: 100,
            })
            .feed(b)
        };
        assert_eq!(bad(b"0\r\n\r\n"), prog(5, true));
        assert_eq!(bad(b"\r\n"), Err(HttpError::BadChunk));
        assert_eq!(bad(b"g\r\n"), Err(HttpError::BadChunk));
        assert_eq!(bad(b"-1\r\n"), Err(HttpError::BadChunk));
        assert_eq!(bad(b"1\n"), Err(HttpError::BareLf));
        assert_eq!(bad(b"1\rx"), Err(HttpError::BareCr));
        assert_eq!(bad(b"1\r\nab"), Err(HttpError::BadChunk));
        assert_eq!(bad(b"1\r\na\n"), Err(HttpError::BadChunk));
        assert_eq!(bad(b"1 \r\n"), Err(HttpError::BadChunk));
        assert_eq!(bad(b"1 ;a\r\nx\r\n0\r\n\r\n").map(|p| p.done), Ok(true));
        assert_eq!(bad(b"1;12345678\r\n"), Err(HttpError::ChunkMetadataTooLong));
        assert_eq!(bad(b"1;1234567\r\n").map(|p| p.done), Ok(false));
        assert_eq!(bad(b"0000000000000000065\r\n"), Err(HttpError::BadChunk));
        assert_eq!(bad(b"65\r\n"), Err(HttpError::ContentTooLarge));
        assert_eq!(bad(b"64\r\n").map(|p| p.done), Ok(false));
        assert_eq!(
            bad(b"0\r\nA: 1234567890123\r\n\r\n"),
            Err(HttpError::ChunkMetadataTooLong)
        );
        assert_eq!(bad(b"0\r\nA: 1\r\n b\r\n\r\n"), Err(HttpError::ObsFold));
        assert_eq!(bad(b"0\r\nA: \x01\r\n\r\n"), Err(HttpError::BadHeaderValue));
        // A failed decoder stays failed.
        let mut d = ChunkedDecoder::new(ChunkLimits::DEFAULT);
        assert!(d.feed(b"z").is_err());
        assert!(d.feed(b"0\r\n\r\n").is_err());
        // Sixteen hex digits: the largest size that fits.
        let mut d = ChunkedDecoder::new(ChunkLimits {
            max_body: u64::MAX,
            ..ChunkLimits::DEFAULT
        });
        assert!(d.feed(b"ffffffffffffffff\r\n").is_ok());
        assert!(ChunkedDecoder::new(ChunkLimits::DEFAULT)
            .feed(b"10000000000000000\r\n")
            .is_err());
    }

    /// A small chunk, then a size that fits 64 bits but not added to the total so far.
    const OVERFLOWING_CHUNKS: &[u8] = b"1\r\na\r\nFFFFFFFFFFFFFFFF\r\n";

    #[test]
    fn chunked_size_overflow_is_400() {
        let mut r = BodyRelay::new(Framing::Chunked, ChunkLimits::DEFAULT);
        let e = r.feed(OVERFLOWING_CHUNKS).unwrap_err();
        assert_eq!(e, HttpError::BadChunk);
        assert_eq!(e.status(), 400);
        // Byte by byte, as a slow client sends it.
        let mut d = ChunkedDecoder::new(ChunkLimits::DEFAULT);
        let mut last = prog(1, false);
        for b in OVERFLOWING_CHUNKS {
            last = d.feed(core::slice::from_ref(b));
        }
        assert_eq!(last, Err(HttpError::BadChunk));
    }

    #[test]
    fn chunked_response_size_overflow_is_error() {
        // The switch relays responses without a body limit.
        let unlimited = ChunkLimits {
            max_body: u64::MAX,
            ..ChunkLimits::DEFAULT
        };
        let mut r = BodyRelay::new(Framing::Chunked, unlimited);
        assert_eq!(r.feed(OVERFLOWING_CHUNKS), Err(HttpError::BadChunk));
        // The largest total is still accepted.
        let mut d = ChunkedDecoder::new(unlimited);
        assert_eq!(d.feed(b"1\r\na\r\nFFFFFFFFFFFFFFFE\r\n"), prog(24, false));
        assert_eq!(d.body_bytes(), u64::MAX);
    }

    #[test]
    fn body_relay() {
        let mut r = BodyRelay::new(Framing::ContentLength(5), ChunkLimits::DEFAULT);
        assert_eq!(r.feed(b"abc"), prog(3, false));
        assert_eq!(r.feed(b"defgh"), prog(2, true));
        assert!(r.is_done());
        assert!(BodyRelay::new(Framing::None, ChunkLimits::DEFAULT).is_done());
        let mut r = BodyRelay::new(Framing::UntilClose, ChunkLimits::DEFAULT);
        assert_eq!(r.feed(b"abc"), prog(3, false));
        let mut r = BodyRelay::new(Framing::Chunked, ChunkLimits::DEFAULT);
        assert_eq!(r.feed(b"1\r\na\r\n0\r\n\r\nX"), prog(11, true));
    }

    #[test]
    fn forwarded_for() {
        let mut out = [0u8; 128];
        let head = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        let n = add_forwarded_for(head, b"192.0.2.1", &mut out).unwrap();
        assert_eq!(
            &out[..n],
            b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 192.0.2.1\r\n\r\n"
        );
        let head = b"GET / HTTP/1.1\r\nx-forwarded-for: 10.0.0.1\r\nHost: a\r\nX-Forwarded-For: 10.0.0.2\r\n\r\n";
        let n = add_forwarded_for(head, b"2001:db8::1", &mut out).unwrap();
        assert_eq!(
            &out[..n],
            &b"GET / HTTP/1.1\r\nx-forwarded-for: 10.0.0.1\r\nHost: a\r\nX-Forwarded-For: 10.0.0.2, 2001:db8::1\r\n\r\n"[..]
        );
        // The result is a valid head whose combined X-Forwarded-For list ends with the client.
        let mut h = [Header::EMPTY; 4];
        let Ok(Status::Complete(r)) = parse_request(&out[..n], &mut h, &Limits::DEFAULT) else {
            panic!()
        };
        assert_eq!(r.headers[2].value, b"10.0.0.2, 2001:db8::1");
        let head = b"GET / HTTP/1.1\r\nX-Forwarded-For:\r\n\r\n";
        let n = add_forwarded_for(head, b"1.2.3.4", &mut out).unwrap();
        assert_eq!(
            &out[..n],
            b"GET / HTTP/1.1\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n"
        );
        assert_eq!(
            add_forwarded_for(head, b"1.2.3.4\r\nX: y", &mut out),
            Err(HttpError::BadHeaderValue)
        );
        assert_eq!(
            add_forwarded_for(head, b"1.2.3.4", &mut out[..20]),
            Err(HttpError::HeadTooLarge)
        );
        assert_eq!(
            insert_header(head, b"Bad Name", b"v", &mut out),
            Err(HttpError::BadHeaderName)
        );
        assert_eq!(error_response(431), b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        assert!(HttpError::BadChunk.response().starts_with(b"HTTP/1.1 400 "));
    }

    /// `head` + `body` rewritten in a buffer with `room` bytes to spare: (buffer, length).
    fn rewrite(
        head: &[u8],
        body: &[u8],
        room: usize,
        ka: bool,
    ) -> Result<([u8; 256], usize), HttpError> {
        let mut buf = [0xAAu8; 256];
        let len = head.len() + body.len();
        buf[..head.len()].copy_from_slice(head);
        buf[head.len()..len].copy_from_slice(body);
        let n = rewrite_response_head(&mut buf[..len + room], len, head.len(), ka, b"")?;
        Ok((buf, n + body.len()))
    }

    fn rewritten(head: &[u8], body: &[u8], room: usize, ka: bool) -> ([u8; 256], usize) {
        rewrite(head, body, room, ka).unwrap()
    }

    #[test]
    fn rewrite_response_head_for_client() {
        let head = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 5\r\nKeep-Alive: timeout=5\r\nX-A: b\r\n\r\n";
        let (b, n) = rewritten(head, b"hello", 0, true);
        assert_eq!(
            &b[..n],
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\nConnection: keep-alive\r\n\r\nhello"
        );
        let (b, n) = rewritten(head, b"", 0, false);
        assert_eq!(
            &b[..n],
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\nConnection: close\r\n\r\n"
        );
        // Growth: no hop-by-hop field to drop.
        let head = b"HTTP/1.0 204 No Content\r\n\r\n";
        let (b, n) = rewritten(head, b"xy", RESPONSE_HEAD_GROWTH, true);
        assert_eq!(
            &b[..n],
            b"HTTP/1.0 204 No Content\r\nConnection: keep-alive\r\n\r\nxy"
        );
        assert_eq!(
            rewrite(head, b"xy", RESPONSE_HEAD_GROWTH - 1, true).map(|_| ()),
            Err(HttpError::HeadTooLarge)
        );
        // The result parses to the same response, with the new persistence.
        let head = b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\nconnection: CLOSE\r\nUpgrade: h2c\r\n\r\n";
        let (b, n) = rewritten(head, b"0\r\n\r\n", 0, true);
        let out = &b[..n];
        let mut h = [Header::EMPTY; 8];
        match parse_response(out, &mut h, &Limits::DEFAULT, Method::Get) {
            Ok(Status::Complete(r)) => {
                assert_eq!(
                    (r.code, r.framing, r.keep_alive),
                    (404, Framing::Chunked, true)
                );
                assert!(find_header(r.headers, b"upgrade").is_none());
                assert_eq!(&out[r.head_len..], b"0\r\n\r\n");
            }
            x => panic!("{x:?}"),
        }
        // Not a head.
        assert_eq!(
            rewrite(b"HTTP/1.1 200 OK\r\n", b"", 64, true).map(|_| ()),
            Err(HttpError::BadStartLine)
        );
        let mut b = [0u8; 8];
        assert_eq!(
            rewrite_response_head(&mut b, 4, 6, true, b""),
            Err(HttpError::BadStartLine)
        );
    }

    #[test]
    fn rewrite_response_head_adds_lines() {
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n";
        let extra = b"Set-Cookie: S=1; Path=/\r\nX-B: c\r\n";
        let mut buf = [0u8; 256];
        let len = head.len() + 2;
        buf[..head.len()].copy_from_slice(head);
        buf[head.len()..len].copy_from_slice(b"ok");
        let room = RESPONSE_HEAD_GROWTH + extra.len();
        let n =
            rewrite_response_head(&mut buf[..len + room], len, head.len(), true, extra).unwrap();
        assert_eq!(
            &buf[..n + 2],
            &b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nSet-Cookie: S=1; Path=/\r\nX-B: c\r\nConnection: keep-alive\r\n\r\nok"[..]
        );
        // Exactly enough room, then one byte less.
        let h204 = b"HTTP/1.0 204 No Content\r\n\r\n";
        let mut b = [0u8; 256];
        b[..h204.len()].copy_from_slice(h204);
        let (l, r) = (h204.len(), RESPONSE_HEAD_GROWTH + extra.len());
        assert!(rewrite_response_head(&mut b[..l + r], l, l, true, extra).is_ok());
        b[..l].copy_from_slice(h204);
        assert_eq!(
            rewrite_response_head(&mut b[..l + r - 1], l, l, true, extra),
            Err(HttpError::HeadTooLarge)
        );
        // Not field lines: refused, buffer unchanged.
        for bad in [
            &b"X: y"[..],
            b"X: y\r\nZ",
            b"no colon\r\n",
            b": v\r\n",
            b"X: a\rb\r\n",
            b"X: a\nb\r\n",
            b"\r\n",
        ] {
            let mut b = [0u8; 256];
            b[..head.len()].copy_from_slice(head);
            assert_eq!(
                rewrite_response_head(&mut b, head.len(), head.len(), false, bad),
                Err(HttpError::BadHeaderValue),
                "{bad:?}"
            );
            assert_eq!(&b[..head.len()], head);
        }
    }

    /// Feeds `msg` in pieces of `step` bytes; returns the bytes parsed in all and the first
    /// answer other than `Partial` with the buffer length it came at.
    fn scan(msg: &[u8], step: usize, max_head: usize) -> (usize, Option<(usize, bool)>) {
        let limits = Limits {
            max_head,
            ..Limits::DEFAULT
        };
        let mut sc = HeadScan::new();
        let mut work = 0;
        let mut len = 0;
        while len < msg.len() {
            len = (len + step).min(msg.len());
            if !sc.should_parse(&msg[..len], max_head) {
                continue;
            }
            work += len;
            let mut h = [Header::EMPTY; 64];
            match parse_request(&msg[..len], &mut h, &limits) {
                Ok(Status::Partial) => {}
                Ok(Status::Complete(_)) => return (work, Some((len, true))),
                Err(_) => return (work, Some((len, false))),
            }
        }
        (work, None)
    }

    fn big_head(fields: usize) -> std::vec::Vec<u8> {
        use std::format;
        use std::string::ToString;
        let mut m = b"\r\nGET /a HTTP/1.1\r\nHost: x\r\n".to_vec();
        for i in 0..fields {
            m.extend_from_slice(
                format!("X-Field-{i}: {}\r\n", "v".to_string().repeat(60)).as_bytes(),
            );
        }
        m.extend_from_slice(b"\r\nBODY");
        m
    }

    #[test]
    fn head_scan_trickled_is_linear() {
        let m = big_head(60);
        let head_len = m.len() - 4;
        // One byte at a time: the head is seen complete exactly when its last byte came, and
        // the parses read at most 4 times its length (a parse per byte read n²/2).
        let (work, got) = scan(&m, 1, 64 * 1024);
        assert_eq!(got, Some((head_len, true)));
        assert!(work <= 4 * m.len(), "work {work} for {} bytes", m.len());
        assert!(head_len * head_len / 2 > 40 * work);
        for step in [2, 3, 7, 100, 1000] {
            let (_, got) = scan(&m, step, 64 * 1024);
            let (at, ok) = got.unwrap();
            assert!(
                ok && at >= head_len && at < head_len + step,
                "step {step}: {at}"
            );
        }
    }

    #[test]
    fn head_scan_errors() {
        // Garbage in one piece is answered at once.
        let (_, got) = scan(b"\x01\x02garbage", 100, 8192);
        assert_eq!(got, Some((9, false)));
        // Trickled garbage: at the latest when the buffer doubled.
        let (_, got) = scan(b"GET / HTTP/1.1\r\nBad Name: x\r\nmore bytes here", 1, 8192);
        let (at, ok) = got.unwrap();
        assert!(!ok && at <= 2 * 29, "{at}");
        // A bare LF ending the head is found at once.
        let (_, got) = scan(b"GET / HTTP/1.0\r\n\n", 1, 8192);
        assert_eq!(got, Some((17, false)));
        // Empty lines before the request line trigger no parse (but the doubling does).
        let mut sc = HeadScan::new();
        let lead = [*b"\r\n"; 200].concat();
        let parses = (1..=lead.len())
            .filter(|&n| sc.should_parse(&lead[..n], 8192))
            .count();
        assert!(parses <= 10, "{parses}");
        // A head that does not fit: parsed when the buffer is full.
        let m = big_head(200);
        let (_, got) = scan(&m, 1, 8192);
        assert_eq!(got, Some((8192, false)));
    }
}
