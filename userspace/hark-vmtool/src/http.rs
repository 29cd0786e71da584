// SPDX-License-Identifier: GPL-2.0
//! Just enough HTTP/1.x for the test backend and the test clients: request and response heads,
//! bodies by length or chunked.

use std::io::{self, BufRead, Read};

/// Header fields in order (names as sent; look them up with [`field`]).
pub type Fields = Vec<(String, String)>;

/// The first value of the field `name` (case-insensitive), like Python's `headers.get`.
pub fn field<'a>(fields: &'a Fields, name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The end of a head (the offset after its empty line), if `buf` holds a whole one.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

fn parse_fields<'a>(lines: impl Iterator<Item = &'a str>) -> Option<Fields> {
    lines
        .take_while(|l| !l.is_empty())
        .map(|l| {
            let (n, v) = l.split_once(':')?;
            let n = n.trim();
            (!n.is_empty() && !n.contains(' ')).then(|| (n.to_owned(), v.trim().to_owned()))
        })
        .collect()
}

fn lines(head: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(head)
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l).to_owned())
        .collect()
}

#[derive(Debug, PartialEq)]
pub struct Request {
    pub method: String,
    pub target: String,
    /// Minor version of HTTP/1.x.
    pub minor: u8,
    pub fields: Fields,
}

impl Request {
    /// Whether the client wants the connection kept after the answer (HTTP/1.1 unless
    /// `Connection: close`, HTTP/1.0 only with `Connection: keep-alive`).
    pub fn wants_keepalive(&self) -> bool {
        let tokens = field(&self.fields, "Connection").unwrap_or("");
        let has = |t: &str| tokens.split(',').any(|x| x.trim().eq_ignore_ascii_case(t));
        if self.minor >= 1 {
            !has("close")
        } else {
            has("keep-alive")
        }
    }
}

/// Parses a request head (request line and fields, up to and including the empty line).
/// Errors are the status to answer: 400 for a malformed head, 505 for a version other than 1.x.
pub fn parse_request(head: &[u8]) -> Result<Request, u16> {
    let lines = lines(head);
    let mut it = lines.iter().map(String::as_str);
    let words: Vec<&str> = it.next().unwrap_or("").split_whitespace().collect();
    let [method, target, version] = words[..] else {
        return Err(400);
    };
    let Some((major, minor)) = version
        .strip_prefix("HTTP/")
        .and_then(|v| v.split_once('.'))
    else {
        return Err(400);
    };
    let (Ok(major), Ok(minor)) = (major.parse::<u8>(), minor.parse::<u8>()) else {
        return Err(400);
    };
    if major != 1 {
        return Err(505);
    }
    let fields = parse_fields(it).ok_or(400u16)?;
    Ok(Request {
        method: method.to_owned(),
        target: target.to_owned(),
        minor,
        fields,
    })
}

#[derive(Debug, PartialEq)]
pub struct ResponseHead {
    pub status: u16,
    pub fields: Fields,
    /// Length of the head in the buffer it was parsed from.
    pub len: usize,
}

impl ResponseHead {
    pub fn content_length(&self) -> Option<usize> {
        field(&self.fields, "Content-Length").and_then(|v| v.parse().ok())
    }
}

/// Parses the response head at the start of `buf`: `None` while incomplete.
pub fn parse_response(buf: &[u8]) -> Option<Result<ResponseHead, String>> {
    let len = head_end(buf)?;
    let lines = lines(&buf[..len]);
    let mut it = lines.iter().map(String::as_str);
    let first = it.next().unwrap_or("");
    let status = match first.split(' ').collect::<Vec<_>>()[..] {
        [v, code, ..] if v.starts_with("HTTP/1.") => code.parse().ok(),
        _ => None,
    };
    let head = status
        .zip(parse_fields(it))
        .map(|(status, fields)| ResponseHead {
            status,
            fields,
            len,
        });
    Some(head.ok_or_else(|| format!("bad response head {:?}", &first[..first.len().min(80)])))
}

/// Reads `n` bytes of a body, handing them to `sink` in pieces.
pub fn read_body(r: &mut impl Read, mut n: usize, sink: &mut impl FnMut(&[u8])) -> io::Result<()> {
    let mut buf = vec![0; 64 * 1024];
    while n > 0 {
        let got = r.read(&mut buf[..n.min(64 * 1024)])?;
        if got == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        sink(&buf[..got]);
        n -= got;
    }
    Ok(())
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

fn read_line(r: &mut impl BufRead) -> io::Result<String> {
    let mut line = Vec::new();
    Read::take(&mut *r, 4096).read_until(b'\n', &mut line)?;
    if line.last() != Some(&b'\n') {
        return Err(bad("chunked body: line too long or cut"));
    }
    Ok(String::from_utf8_lossy(&line).trim_end().to_owned())
}

/// Reads a chunked body (sizes in hex, extensions after `;` ignored, trailer fields skipped).
pub fn read_chunked(r: &mut impl BufRead, sink: &mut impl FnMut(&[u8])) -> io::Result<()> {
    loop {
        let line = read_line(r)?;
        let size = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size, 16).map_err(|_| bad("chunked body: bad size"))?;
        if size == 0 {
            while !read_line(r)?.is_empty() {}
            return Ok(());
        }
        read_body(r, size, sink)?;
        if !read_line(r)?.is_empty() {
            return Err(bad("chunked body: no CRLF after a chunk"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_heads() {
        let r = parse_request(
            b"GET /x?y=1 HTTP/1.1\r\nHost: h\r\nX-Forwarded-For:  1.2.3.4 \r\nhost: second\r\n\r\n",
        )
        .unwrap();
        assert_eq!(
            (r.method.as_str(), r.target.as_str(), r.minor),
            ("GET", "/x?y=1", 1)
        );
        assert_eq!(field(&r.fields, "HOST"), Some("h"));
        assert_eq!(field(&r.fields, "x-forwarded-for"), Some("1.2.3.4"));
        assert_eq!(field(&r.fields, "Connection"), None);
        assert!(r.wants_keepalive());
        let r = parse_request(b"GET / HTTP/1.0\nConnection: Keep-Alive\n\n").unwrap();
        assert_eq!(r.minor, 0);
        assert!(r.wants_keepalive());
        assert!(!parse_request(b"GET / HTTP/1.0\r\n\r\n")
            .unwrap()
            .wants_keepalive());
        assert!(
            !parse_request(b"GET / HTTP/1.1\r\nConnection: te, close\r\n\r\n")
                .unwrap()
                .wants_keepalive()
        );
        assert_eq!(parse_request(b"GET /x HTTP/1.1 extra\r\n\r\n"), Err(400));
        assert_eq!(parse_request(b"GET /x\r\n\r\n"), Err(400));
        assert_eq!(parse_request(b"GET /x HTTP/2.0\r\n\r\n"), Err(505));
        assert_eq!(parse_request(b"GET /x FTP/1.0\r\n\r\n"), Err(400));
        assert_eq!(parse_request(b"GET /x HTTP/1.x\r\n\r\n"), Err(400));
        assert_eq!(
            parse_request(b"GET /x HTTP/1.1\r\nno colon\r\n\r\n"),
            Err(400)
        );
        assert_eq!(
            parse_request(b"GET /x HTTP/1.1\r\nA b: c\r\n\r\n"),
            Err(400)
        );
        assert_eq!(parse_request(b""), Err(400));
    }

    #[test]
    fn response_heads() {
        assert_eq!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Len"), None);
        let buf = b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";
        let h = parse_response(buf).unwrap().unwrap();
        assert_eq!(
            (h.status, h.len, h.content_length()),
            (200, buf.len() - 5, Some(5))
        );
        assert_eq!(field(&h.fields, "connection"), Some("close"));
        let h = parse_response(b"HTTP/1.1 408 Request Timeout\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!((h.status, h.content_length()), (408, None));
        assert!(parse_response(b"HTTP/1.1 2xx OK\r\n\r\n").unwrap().is_err());
        assert!(parse_response(b"SSH-2.0\r\n\r\n").unwrap().is_err());
    }

    fn chunked(input: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut r = input;
        read_chunked(&mut r, &mut |d| out.extend_from_slice(d))?;
        assert!(r.is_empty(), "left over: {r:?}");
        Ok(out)
    }

    #[test]
    fn chunked_bodies() {
        assert_eq!(
            chunked(b"5\r\nhello\r\n1;ext=1\r\n!\r\n0\r\n\r\n").unwrap(),
            b"hello!"
        );
        assert_eq!(
            chunked(b"A\r\n0123456789\r\n0\r\nTrailer: x\r\n\r\n").unwrap(),
            b"0123456789"
        );
        assert_eq!(chunked(b"0\r\n\r\n").unwrap(), b"");
        assert!(chunked(b"zz\r\n").is_err());
        assert!(chunked(b"5\r\nhel").is_err());
        assert!(chunked(b"2\r\nhello\r\n0\r\n\r\n").is_err());
    }

    #[test]
    fn bodies_by_length() {
        let mut out = Vec::new();
        let mut r: &[u8] = b"abcdef";
        read_body(&mut r, 4, &mut |d| out.extend_from_slice(d)).unwrap();
        assert_eq!((out.as_slice(), r), (&b"abcd"[..], &b"ef"[..]));
        assert!(read_body(&mut r, 3, &mut |_| ()).is_err());
    }
}
