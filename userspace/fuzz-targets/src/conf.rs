// SPDX-License-Identifier: GPL-2.0

//! The configuration grammars of the CLIs: `rdrbdadm`'s drbd.conf and `rtcpvsadm`'s
//! KTCPVS-like service file.

use rdrbdadm::conf::Config;
use rtcpvsadm::conf as tcpvs;

/// Lines in `text`, as a parser numbers them (from 1).
fn lines(text: &str) -> usize {
    text.matches('\n').count() + 1
}

/// `rdrbdadm`'s drbd.conf parser on the input as UTF-8 (other inputs are skipped). Errors name
/// a line of the text; resource names are unique; a comment appended changes nothing; one
/// line prepended moves every reported line by one and changes nothing else.
pub fn drbd_conf(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let got = Config::parse(text, "f");
    let commented = Config::parse(&format!("{text}\n# end\n"), "f");
    let shifted = Config::parse(&format!("\n{text}"), "f");
    match &got {
        Ok(cfg) => {
            for (i, r) in cfg.resources.iter().enumerate() {
                assert!(!cfg.resources[..i].iter().any(|o| o.name == r.name));
                assert!(cfg.resource(&r.name).is_some());
                assert!((1..=lines(text)).contains(&r.line));
                for h in &r.hosts {
                    assert!((r.line..=lines(text)).contains(&h.line));
                    assert!(r.host(&h.name).is_some());
                    let _ = (r.minor_for(h), r.disk_for(h));
                }
            }
            assert_eq!(commented.as_ref(), Ok(cfg), "a comment changed the config");
            let mut moved = cfg.clone();
            for r in &mut moved.resources {
                r.line += 1;
                for h in &mut r.hosts {
                    h.line += 1;
                }
            }
            assert_eq!(shifted, Ok(moved), "a leading newline changed the config");
        }
        Err(e) => {
            assert!(
                e.line <= lines(text),
                "error line {} of {}",
                e.line,
                lines(text)
            );
            assert!(!e.to_string().is_empty());
            let Err(s) = shifted else {
                panic!("a leading newline made {e} go away");
            };
            assert_eq!(s.msg, e.msg);
            assert_eq!(s.line, if e.line == 0 { 0 } else { e.line + 1 });
        }
    }
}

/// `rtcpvsadm`'s service file parser on the input as UTF-8: `format` of what it parsed reads
/// back equal (as its documentation promises), errors name a line of the text, `list --json`
/// output is valid JSON (RFC 8259) and the text listing is produced without failing.
pub fn rtcpvs_conf(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match tcpvs::parse(text) {
        Ok(svcs) => {
            let out = tcpvs::format(&svcs);
            assert_eq!(tcpvs::parse(&out), Ok(svcs.clone()), "format:\n{out}");
            let json = tcpvs::to_json(&svcs);
            assert!(json::valid(json.as_bytes()), "invalid JSON: {json}");
            let _ = tcpvs::to_text(&svcs);
        }
        Err(e) => assert!((1..=lines(text)).contains(&e.line), "{e}"),
    }
}

/// A strict JSON (RFC 8259) syntax check, enough to tell whether `to_json` output is JSON.
mod json {
    pub fn valid(s: &[u8]) -> bool {
        let mut p = P { s, i: 0 };
        p.ws();
        p.value(0) && {
            p.ws();
            p.i == s.len()
        }
    }

    struct P<'a> {
        s: &'a [u8],
        i: usize,
    }

    impl P<'_> {
        fn peek(&self) -> Option<u8> {
            self.s.get(self.i).copied()
        }

        fn eat(&mut self, b: u8) -> bool {
            let ok = self.peek() == Some(b);
            self.i += usize::from(ok);
            ok
        }

        fn ws(&mut self) {
            while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
                self.i += 1;
            }
        }

        fn lit(&mut self, w: &[u8]) -> bool {
            let ok = self.s[self.i..].starts_with(w);
            self.i += if ok { w.len() } else { 0 };
            ok
        }

        fn digits(&mut self) -> usize {
            let n = self.s[self.i..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count();
            self.i += n;
            n
        }

        fn number(&mut self) -> bool {
            self.eat(b'-');
            match self.peek() {
                Some(b'0') => self.i += 1,
                Some(b'1'..=b'9') => {
                    self.digits();
                }
                _ => return false,
            }
            if self.eat(b'.') && self.digits() == 0 {
                return false;
            }
            if self.eat(b'e') || self.eat(b'E') {
                let _ = self.eat(b'+') || self.eat(b'-');
                return self.digits() > 0;
            }
            true
        }

        fn string(&mut self) -> bool {
            if !self.eat(b'"') {
                return false;
            }
            loop {
                match self.peek() {
                    None => return false,
                    Some(b'"') => {
                        self.i += 1;
                        return true;
                    }
                    Some(b'\\') => {
                        self.i += 1;
                        match self.peek() {
                            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                                self.i += 1
                            }
                            Some(b'u') => {
                                let h = self.s.get(self.i + 1..self.i + 5);
                                if !h.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                                    return false;
                                }
                                self.i += 5;
                            }
                            _ => return false,
                        }
                    }
                    Some(b) if b < 0x20 => return false,
                    Some(_) => self.i += 1,
                }
            }
        }

        fn value(&mut self, depth: u32) -> bool {
            if depth > 64 {
                return false;
            }
            match self.peek() {
                Some(b'{') => self.list(b'}', depth, true),
                Some(b'[') => self.list(b']', depth, false),
                Some(b'"') => self.string(),
                Some(b't') => self.lit(b"true"),
                Some(b'f') => self.lit(b"false"),
                Some(b'n') => self.lit(b"null"),
                _ => self.number(),
            }
        }

        fn list(&mut self, close: u8, depth: u32, object: bool) -> bool {
            self.i += 1;
            self.ws();
            if self.eat(close) {
                return true;
            }
            loop {
                if object {
                    if !self.string() {
                        return false;
                    }
                    self.ws();
                    if !self.eat(b':') {
                        return false;
                    }
                    self.ws();
                }
                if !self.value(depth + 1) {
                    return false;
                }
                self.ws();
                if self.eat(close) {
                    return true;
                }
                if !self.eat(b',') {
                    return false;
                }
                self.ws();
            }
        }
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn json_syntax() {
            for ok in [
                &b"{}"[..],
                b"{\"a\":[1,-0.5e3,true,false,null,\"x\\u00e9\\n\"]}",
                b" [ ] ",
            ] {
                assert!(super::valid(ok), "{}", String::from_utf8_lossy(ok));
            }
            for bad in [
                &b"{"[..],
                b"+5",
                b"007",
                b"[1,]",
                b"{\"a\"}",
                b"\"\x01\"",
                b"1 2",
            ] {
                assert!(!super::valid(bad), "{}", String::from_utf8_lossy(bad));
            }
        }
    }
}
