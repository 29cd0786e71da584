// SPDX-License-Identifier: GPL-2.0

//! Allocation-free netlink message codec: `nlmsghdr`, `genlmsghdr` and `nlattr`.
//!
//! [`MsgWriter`] builds one (generic) netlink message in a caller-provided buffer,
//! [`MsgIter`] splits a received datagram into messages, [`AttrIter`] walks an attribute area and
//! [`parse_error`] / [`parse_done`] decode `NLMSG_ERROR` and `NLMSG_DONE` including the extended
//! ACK message. All integers are in host byte order, as netlink carries them.
//!
//! Nothing here allocates, panics or uses `unsafe`, whatever the input: every length a peer
//! sends is checked against the buffer before it is used. The constants are those of
//! `include/uapi/linux/netlink.h` and `include/uapi/linux/genetlink.h`.

#![deny(clippy::arithmetic_side_effects)]

use core::fmt;

/// Length of `struct nlmsghdr`.
pub const NLMSG_HDRLEN: usize = 16;
/// Length of `struct genlmsghdr` (`cmd`, `version`, two reserved bytes).
pub const GENL_HDRLEN: usize = 4;
/// Length of `struct nlattr`.
pub const NLA_HDRLEN: usize = 4;
/// Alignment of messages (`NLMSG_ALIGNTO`).
pub const NLMSG_ALIGNTO: usize = 4;
/// Alignment of attributes (`NLA_ALIGNTO`).
pub const NLA_ALIGNTO: usize = 4;
/// Length of `struct nlmsgerr`: the error code and the echoed `nlmsghdr`.
pub const NLMSGERR_LEN: usize = 4 + NLMSG_HDRLEN;

/// Message type: nothing, to be ignored.
pub const NLMSG_NOOP: u16 = 0x1;
/// Message type: error or acknowledgement (`struct nlmsgerr`).
pub const NLMSG_ERROR: u16 = 0x2;
/// Message type: end of a dump.
pub const NLMSG_DONE: u16 = 0x3;
/// Message type: data lost.
pub const NLMSG_OVERRUN: u16 = 0x4;
/// Lowest message type that is not a netlink control message.
pub const NLMSG_MIN_TYPE: u16 = 0x10;

/// Flag: the message is a request.
pub const NLM_F_REQUEST: u16 = 0x01;
/// Flag: part of a multipart message terminated by `NLMSG_DONE`.
pub const NLM_F_MULTI: u16 = 0x02;
/// Flag: reply with an acknowledgement (`NLMSG_ERROR` with error 0) or an error.
pub const NLM_F_ACK: u16 = 0x04;
/// Flag: echo this request.
pub const NLM_F_ECHO: u16 = 0x08;
/// Flag: the dump was inconsistent because the data changed during it.
pub const NLM_F_DUMP_INTR: u16 = 0x10;
/// Flag (GET requests): return the complete table.
pub const NLM_F_ROOT: u16 = 0x100;
/// Flag (GET requests): return all matching entries.
pub const NLM_F_MATCH: u16 = 0x200;
/// Flag (GET requests): dump, `NLM_F_ROOT | NLM_F_MATCH`.
pub const NLM_F_DUMP: u16 = NLM_F_ROOT | NLM_F_MATCH;
/// Flag (`NLMSG_ERROR`): only the header of the original request is echoed.
pub const NLM_F_CAPPED: u16 = 0x100;
/// Flag (`NLMSG_ERROR`, `NLMSG_DONE`): extended ACK attributes follow.
pub const NLM_F_ACK_TLVS: u16 = 0x200;

/// Extended ACK attribute: human-readable error message (string).
pub const NLMSGERR_ATTR_MSG: u16 = 1;
/// Extended ACK attribute: offset of the offending attribute in the request (`u32`).
pub const NLMSGERR_ATTR_OFFS: u16 = 2;

/// Attribute type flag: the payload is a nested attribute area.
pub const NLA_F_NESTED: u16 = 1 << 15;
/// Attribute type flag: the payload is in network byte order.
pub const NLA_F_NET_BYTEORDER: u16 = 1 << 14;
/// Mask that removes the flags from an attribute type.
pub const NLA_TYPE_MASK: u16 = !(NLA_F_NESTED | NLA_F_NET_BYTEORDER);

/// Family id of the generic netlink controller (`nlctrl`).
pub const GENL_ID_CTRL: u16 = 0x10;
/// Size of a generic netlink family name, including the terminating NUL.
pub const GENL_NAMSIZ: usize = 16;
/// Controller command: a family description (reply to `CTRL_CMD_GETFAMILY`).
pub const CTRL_CMD_NEWFAMILY: u8 = 1;
/// Controller command: look up a family (by name or id), or dump all of them.
pub const CTRL_CMD_GETFAMILY: u8 = 3;
/// Controller attribute: family id (`u16`).
pub const CTRL_ATTR_FAMILY_ID: u16 = 1;
/// Controller attribute: family name (string).
pub const CTRL_ATTR_FAMILY_NAME: u16 = 2;
/// Controller attribute: family version (`u32`).
pub const CTRL_ATTR_VERSION: u16 = 3;
/// Controller attribute: user header size (`u32`).
pub const CTRL_ATTR_HDRSIZE: u16 = 4;
/// Controller attribute: highest attribute number of the family (`u32`).
pub const CTRL_ATTR_MAXATTR: u16 = 5;
/// Controller attribute: nested list of multicast groups.
pub const CTRL_ATTR_MCAST_GROUPS: u16 = 7;
/// Multicast group attribute: group name (string).
pub const CTRL_ATTR_MCAST_GRP_NAME: u16 = 1;
/// Multicast group attribute: group id (`u32`).
pub const CTRL_ATTR_MCAST_GRP_ID: u16 = 2;

/// Why encoding or decoding failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NlaError {
    /// The caller's buffer is too small for what was to be written.
    NoSpace,
    /// The data ends inside a header or before the end a length field announces.
    Truncated,
    /// A length field is smaller than the header it belongs to.
    BadLength,
    /// An attribute payload does not have the size of the requested type.
    BadSize,
    /// A string attribute is not valid UTF-8.
    BadUtf8,
    /// A string to encode contains a NUL byte.
    InteriorNul,
    /// An attribute or message is longer than its length field can express.
    TooLong,
    /// Nested attributes were not closed in order, or a message was finished with one open.
    BadNesting,
}

impl NlaError {
    /// A short description of the error.
    pub fn as_str(self) -> &'static str {
        match self {
            NlaError::NoSpace => "buffer too small",
            NlaError::Truncated => "truncated netlink data",
            NlaError::BadLength => "netlink length field smaller than its header",
            NlaError::BadSize => "attribute payload has the wrong size",
            NlaError::BadUtf8 => "string attribute is not valid UTF-8",
            NlaError::InteriorNul => "string contains a NUL byte",
            NlaError::TooLong => "attribute or message too long",
            NlaError::BadNesting => "unbalanced nested attributes",
        }
    }
}

impl fmt::Display for NlaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Rounds `len` up to the netlink alignment of 4 bytes (`NLA_ALIGN`, `NLMSG_ALIGN`).
///
/// `None` if the result does not fit a `usize`.
pub const fn align4(len: usize) -> Option<usize> {
    match len.checked_add(NLA_ALIGNTO - 1) {
        Some(v) => Some(v & !(NLA_ALIGNTO - 1)),
        None => None,
    }
}

fn read_u16(b: &[u8], off: usize) -> Option<u16> {
    let end = off.checked_add(2)?;
    let s: [u8; 2] = b.get(off..end)?.try_into().ok()?;
    Some(u16::from_ne_bytes(s))
}

fn read_u32(b: &[u8], off: usize) -> Option<u32> {
    let end = off.checked_add(4)?;
    let s: [u8; 4] = b.get(off..end)?.try_into().ok()?;
    Some(u32::from_ne_bytes(s))
}

fn read_i32(b: &[u8], off: usize) -> Option<i32> {
    read_u32(b, off).map(|v| i32::from_ne_bytes(v.to_ne_bytes()))
}

/// Copies `src` into `buf` at `off`; `false` if it does not fit.
fn write_at(buf: &mut [u8], off: usize, src: &[u8]) -> bool {
    let Some(end) = off.checked_add(src.len()) else {
        return false;
    };
    match buf.get_mut(off..end) {
        Some(dst) => {
            dst.copy_from_slice(src);
            true
        }
        None => false,
    }
}

/// Proof of an open nested attribute, returned by [`MsgWriter::begin_nested`] and consumed by
/// [`MsgWriter::end_nested`].
#[derive(Debug)]
pub struct NestToken {
    start: usize,
    depth: usize,
}

/// Builds one netlink message in a caller-provided buffer.
///
/// The header is written by the constructor, attributes are appended with the `put_*`
/// methods, and [`MsgWriter::finish`] fills in `nlmsg_len` and returns the message. A method
/// that fails leaves the message as it was before the call.
#[derive(Debug)]
pub struct MsgWriter<'a> {
    buf: &'a mut [u8],
    len: usize,
    depth: usize,
}

impl<'a> MsgWriter<'a> {
    /// Starts a plain netlink message: writes the `nlmsghdr` (length filled in by `finish`,
    /// port id 0).
    pub fn new(buf: &'a mut [u8], nlmsg_type: u16, flags: u16, seq: u32) -> Result<Self, NlaError> {
        let hdr = buf.get_mut(..NLMSG_HDRLEN).ok_or(NlaError::NoSpace)?;
        hdr[0..4].copy_from_slice(&(NLMSG_HDRLEN as u32).to_ne_bytes());
        hdr[4..6].copy_from_slice(&nlmsg_type.to_ne_bytes());
        hdr[6..8].copy_from_slice(&flags.to_ne_bytes());
        hdr[8..12].copy_from_slice(&seq.to_ne_bytes());
        hdr[12..16].copy_from_slice(&0u32.to_ne_bytes());
        Ok(MsgWriter {
            buf,
            len: NLMSG_HDRLEN,
            depth: 0,
        })
    }

    /// Starts a generic netlink message: writes the `nlmsghdr` (type = family id) and the
    /// `genlmsghdr` with `cmd` and `version`.
    pub fn new_genl(
        buf: &'a mut [u8],
        nlmsg_type: u16,
        flags: u16,
        seq: u32,
        cmd: u8,
        version: u8,
    ) -> Result<Self, NlaError> {
        if buf.len() < NLMSG_HDRLEN + GENL_HDRLEN {
            return Err(NlaError::NoSpace);
        }
        let mut w = Self::new(buf, nlmsg_type, flags, seq)?;
        if !write_at(w.buf, NLMSG_HDRLEN, &[cmd, version, 0, 0]) {
            return Err(NlaError::NoSpace);
        }
        w.len = NLMSG_HDRLEN + GENL_HDRLEN;
        Ok(w)
    }

    /// Bytes written so far, padding included.
    pub fn msg_len(&self) -> usize {
        self.len
    }

    /// The sequence number the message was started with.
    pub fn seq(&self) -> u32 {
        read_u32(self.buf, 8).unwrap_or(0)
    }

    /// Appends an attribute header of `attr_type` for `payload_len` bytes, reserving the
    /// aligned space; returns the offset of the payload.
    fn reserve(&mut self, attr_type: u16, payload_len: usize) -> Result<usize, NlaError> {
        let total = payload_len
            .checked_add(NLA_HDRLEN)
            .ok_or(NlaError::TooLong)?;
        let nla_len = u16::try_from(total).map_err(|_| NlaError::TooLong)?;
        let end = align4(total)
            .and_then(|a| self.len.checked_add(a))
            .ok_or(NlaError::NoSpace)?;
        let area = self.buf.get_mut(self.len..end).ok_or(NlaError::NoSpace)?;
        area.fill(0);
        area[0..2].copy_from_slice(&nla_len.to_ne_bytes());
        area[2..4].copy_from_slice(&attr_type.to_ne_bytes());
        // Within `end` (checked above).
        let payload = self.len.saturating_add(NLA_HDRLEN);
        self.len = end;
        Ok(payload)
    }

    /// Appends an attribute with a raw payload.
    pub fn put_bytes(&mut self, attr_type: u16, payload: &[u8]) -> Result<(), NlaError> {
        let off = self.reserve(attr_type, payload.len())?;
        if write_at(self.buf, off, payload) {
            Ok(())
        } else {
            Err(NlaError::NoSpace)
        }
    }

    /// Appends a `u8` attribute.
    pub fn put_u8(&mut self, attr_type: u16, v: u8) -> Result<(), NlaError> {
        self.put_bytes(attr_type, &[v])
    }

    /// Appends a `u16` attribute.
    pub fn put_u16(&mut self, attr_type: u16, v: u16) -> Result<(), NlaError> {
        self.put_bytes(attr_type, &v.to_ne_bytes())
    }

    /// Appends a `u32` attribute.
    pub fn put_u32(&mut self, attr_type: u16, v: u32) -> Result<(), NlaError> {
        self.put_bytes(attr_type, &v.to_ne_bytes())
    }

    /// Appends a `u64` attribute.
    pub fn put_u64(&mut self, attr_type: u16, v: u64) -> Result<(), NlaError> {
        self.put_bytes(attr_type, &v.to_ne_bytes())
    }

    /// Appends a flag attribute (no payload).
    pub fn put_flag(&mut self, attr_type: u16) -> Result<(), NlaError> {
        self.put_bytes(attr_type, &[])
    }

    /// Appends a NUL-terminated string attribute. A string containing NUL is refused, since
    /// the receiver would see only its first part.
    pub fn put_str(&mut self, attr_type: u16, s: &str) -> Result<(), NlaError> {
        if s.as_bytes().contains(&0) {
            return Err(NlaError::InteriorNul);
        }
        let len = s.len().checked_add(1).ok_or(NlaError::TooLong)?;
        let off = self.reserve(attr_type, len)?;
        // The terminating NUL is already there: `reserve` zeroes the area.
        if write_at(self.buf, off, s.as_bytes()) {
            Ok(())
        } else {
            Err(NlaError::NoSpace)
        }
    }

    /// Opens a nested attribute of `attr_type` (sent with `NLA_F_NESTED`); attributes put
    /// until the matching [`MsgWriter::end_nested`] go inside it.
    pub fn begin_nested(&mut self, attr_type: u16) -> Result<NestToken, NlaError> {
        let start = self.len;
        self.reserve(attr_type | NLA_F_NESTED, 0)?;
        // Each level holds a 4-byte header of the buffer: no saturation.
        self.depth = self.depth.saturating_add(1);
        Ok(NestToken {
            start,
            depth: self.depth,
        })
    }

    /// Closes the nested attribute `token` was returned for; nests close innermost first.
    pub fn end_nested(&mut self, token: NestToken) -> Result<(), NlaError> {
        if token.depth != self.depth || token.depth == 0 {
            return Err(NlaError::BadNesting);
        }
        let ty = read_u16(self.buf, token.start.saturating_add(2)).ok_or(NlaError::BadNesting)?;
        if ty & NLA_F_NESTED == 0 || token.start >= self.len {
            return Err(NlaError::BadNesting);
        }
        // token.start < self.len (checked above).
        let len =
            u16::try_from(self.len.saturating_sub(token.start)).map_err(|_| NlaError::TooLong)?;
        if !write_at(self.buf, token.start, &len.to_ne_bytes()) {
            return Err(NlaError::BadNesting);
        }
        // token.depth == self.depth > 0 (checked above).
        self.depth = self.depth.saturating_sub(1);
        Ok(())
    }

    /// Fills in `nlmsg_len` and returns the finished message.
    pub fn finish(self) -> Result<&'a [u8], NlaError> {
        if self.depth != 0 {
            return Err(NlaError::BadNesting);
        }
        let len = u32::try_from(self.len).map_err(|_| NlaError::TooLong)?;
        let buf = self.buf;
        if !write_at(buf, 0, &len.to_ne_bytes()) {
            return Err(NlaError::NoSpace);
        }
        buf.get(..self.len).ok_or(NlaError::NoSpace)
    }
}

/// One netlink message of a received datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Msg<'a> {
    /// `nlmsg_len`: header plus payload, without trailing padding.
    pub len: u32,
    /// `nlmsg_type`: a control type (`NLMSG_ERROR`, ...) or the generic netlink family id.
    pub nlmsg_type: u16,
    /// `nlmsg_flags`.
    pub flags: u16,
    /// `nlmsg_seq`.
    pub seq: u32,
    /// `nlmsg_pid`: port id of the addressed socket (replies) or 0.
    pub pid: u32,
    /// Everything after the `nlmsghdr`, up to `nlmsg_len`.
    pub payload: &'a [u8],
}

impl<'a> Msg<'a> {
    /// Decodes the payload as a generic netlink message.
    pub fn genl(&self) -> Result<GenlMsg<'a>, NlaError> {
        parse_genl(self.payload)
    }

    /// Decodes an `NLMSG_ERROR` message, see [`parse_error`].
    pub fn error(&self) -> Result<(i32, Option<&'a str>), NlaError> {
        parse_error(self.flags, self.payload)
    }

    /// Decodes an `NLMSG_DONE` message, see [`parse_done`].
    pub fn done(&self) -> Result<(i32, Option<&'a str>), NlaError> {
        parse_done(self.flags, self.payload)
    }
}

/// The payload of a generic netlink message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GenlMsg<'a> {
    /// `genlmsghdr.cmd`.
    pub cmd: u8,
    /// `genlmsghdr.version`.
    pub version: u8,
    /// The attribute area after the `genlmsghdr`.
    pub attrs: &'a [u8],
}

impl<'a> GenlMsg<'a> {
    /// Iterates over the attributes.
    pub fn attrs(&self) -> AttrIter<'a> {
        AttrIter::new(self.attrs)
    }
}

/// Splits the payload of a generic netlink message into its header and attribute area.
pub fn parse_genl(payload: &[u8]) -> Result<GenlMsg<'_>, NlaError> {
    match payload {
        [cmd, version, _, _, attrs @ ..] => Ok(GenlMsg {
            cmd: *cmd,
            version: *version,
            attrs,
        }),
        _ => Err(NlaError::Truncated),
    }
}

/// Iterates over the netlink messages of a datagram.
///
/// Yields an error and then stops when a header is truncated, `nlmsg_len` is smaller than the
/// header or larger than what is left of the datagram.
#[derive(Clone, Debug)]
pub struct MsgIter<'a> {
    rest: &'a [u8],
    failed: bool,
}

impl<'a> MsgIter<'a> {
    /// Iterates over the messages in `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        MsgIter {
            rest: buf,
            failed: false,
        }
    }

    fn fail(&mut self, e: NlaError) -> Option<Result<Msg<'a>, NlaError>> {
        self.failed = true;
        self.rest = &[];
        Some(Err(e))
    }
}

impl<'a> Iterator for MsgIter<'a> {
    type Item = Result<Msg<'a>, NlaError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        let b = self.rest;
        let (Some(len), Some(nlmsg_type), Some(flags), Some(seq), Some(pid)) = (
            read_u32(b, 0),
            read_u16(b, 4),
            read_u16(b, 6),
            read_u32(b, 8),
            read_u32(b, 12),
        ) else {
            return self.fail(NlaError::Truncated);
        };
        let Ok(n) = usize::try_from(len) else {
            return self.fail(NlaError::Truncated);
        };
        if n < NLMSG_HDRLEN {
            return self.fail(NlaError::BadLength);
        }
        let Some(payload) = b.get(NLMSG_HDRLEN..n) else {
            return self.fail(NlaError::Truncated);
        };
        let next = align4(n).map_or(b.len(), |a| a.min(b.len()));
        self.rest = b.get(next..).unwrap_or(&[]);
        Some(Ok(Msg {
            len,
            nlmsg_type,
            flags,
            seq,
            pid,
            payload,
        }))
    }
}

/// Iterates over an attribute area, yielding `(type without NLA_F_* flags, payload)`.
///
/// Yields an error and then stops when an attribute header is truncated, `nla_len` is smaller
/// than the header or larger than what is left of the area.
#[derive(Clone, Debug)]
pub struct AttrIter<'a> {
    rest: &'a [u8],
    failed: bool,
}

impl<'a> AttrIter<'a> {
    /// Iterates over the attributes in `area`.
    pub fn new(area: &'a [u8]) -> Self {
        AttrIter {
            rest: area,
            failed: false,
        }
    }

    fn fail(&mut self, e: NlaError) -> Option<Result<(u16, &'a [u8]), NlaError>> {
        self.failed = true;
        self.rest = &[];
        Some(Err(e))
    }
}

impl<'a> Iterator for AttrIter<'a> {
    type Item = Result<(u16, &'a [u8]), NlaError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        let b = self.rest;
        let (Some(len), Some(ty)) = (read_u16(b, 0), read_u16(b, 2)) else {
            return self.fail(NlaError::Truncated);
        };
        let n = usize::from(len);
        if n < NLA_HDRLEN {
            return self.fail(NlaError::BadLength);
        }
        let Some(payload) = b.get(NLA_HDRLEN..n) else {
            return self.fail(NlaError::Truncated);
        };
        let next = align4(n).map_or(b.len(), |a| a.min(b.len()));
        self.rest = b.get(next..).unwrap_or(&[]);
        Some(Ok((ty & NLA_TYPE_MASK, payload)))
    }
}

/// The payload of the first attribute of `attr_type` in `area`, if any; a malformed area is an
/// error even if the attribute comes before the damage.
pub fn find_attr(area: &[u8], attr_type: u16) -> Result<Option<&[u8]>, NlaError> {
    let mut found = None;
    for a in AttrIter::new(area) {
        let (t, p) = a?;
        if t == attr_type && found.is_none() {
            found = Some(p);
        }
    }
    Ok(found)
}

/// Decodes a `u8` attribute payload.
pub fn as_u8(p: &[u8]) -> Result<u8, NlaError> {
    match p {
        [v] => Ok(*v),
        _ => Err(NlaError::BadSize),
    }
}

/// Decodes a `u16` attribute payload.
pub fn as_u16(p: &[u8]) -> Result<u16, NlaError> {
    let a: [u8; 2] = p.try_into().map_err(|_| NlaError::BadSize)?;
    Ok(u16::from_ne_bytes(a))
}

/// Decodes a `u32` attribute payload.
pub fn as_u32(p: &[u8]) -> Result<u32, NlaError> {
    let a: [u8; 4] = p.try_into().map_err(|_| NlaError::BadSize)?;
    Ok(u32::from_ne_bytes(a))
}

/// Decodes a `u64` attribute payload.
pub fn as_u64(p: &[u8]) -> Result<u64, NlaError> {
    let a: [u8; 8] = p.try_into().map_err(|_| NlaError::BadSize)?;
    Ok(u64::from_ne_bytes(a))
}

/// Decodes a string attribute payload: one trailing NUL is removed, the rest must be UTF-8.
pub fn as_str(p: &[u8]) -> Result<&str, NlaError> {
    let s = p.strip_suffix(&[0]).unwrap_or(p);
    core::str::from_utf8(s).map_err(|_| NlaError::BadUtf8)
}

/// The `NLMSGERR_ATTR_MSG` string of an extended ACK attribute area, if any.
fn ext_msg(tlvs: &[u8]) -> Result<Option<&str>, NlaError> {
    find_attr(tlvs, NLMSGERR_ATTR_MSG)?.map(as_str).transpose()
}

/// Decodes the payload of an `NLMSG_ERROR` message whose `nlmsg_flags` are `flags`.
///
/// Returns the `error` field (0 for an acknowledgement, else a negative errno) and the
/// extended ACK message if the kernel sent one. The payload is `struct nlmsgerr`; unless
/// `NLM_F_CAPPED` is set the whole original request follows its echoed header, and with
/// `NLM_F_ACK_TLVS` the extended ACK attributes come after that.
pub fn parse_error(flags: u16, payload: &[u8]) -> Result<(i32, Option<&str>), NlaError> {
    let error = read_i32(payload, 0).ok_or(NlaError::Truncated)?;
    let orig_len = read_u32(payload, 4).ok_or(NlaError::Truncated)?;
    if payload.len() < NLMSGERR_LEN {
        return Err(NlaError::Truncated);
    }
    let tlv_start = if flags & NLM_F_CAPPED != 0 {
        NLMSGERR_LEN
    } else {
        let n = usize::try_from(orig_len).map_err(|_| NlaError::Truncated)?;
        if n < NLMSG_HDRLEN {
            return Err(NlaError::BadLength);
        }
        let end = n.checked_add(4).ok_or(NlaError::Truncated)?;
        if end > payload.len() {
            return Err(NlaError::Truncated);
        }
        align4(end).map_or(payload.len(), |a| a.min(payload.len()))
    };
    if flags & NLM_F_ACK_TLVS == 0 {
        return Ok((error, None));
    }
    let tlvs = payload.get(tlv_start..).ok_or(NlaError::Truncated)?;
    Ok((error, ext_msg(tlvs)?))
}

/// Decodes the payload of an `NLMSG_DONE` message whose `nlmsg_flags` are `flags`: the `int`
/// result of the dump (0 or a negative errno) and, with `NLM_F_ACK_TLVS`, the extended ACK
/// message if present.
///
/// An empty payload (some old dumpers send none) counts as success.
pub fn parse_done(flags: u16, payload: &[u8]) -> Result<(i32, Option<&str>), NlaError> {
    if payload.is_empty() {
        return Ok((0, None));
    }
    let error = read_i32(payload, 0).ok_or(NlaError::Truncated)?;
    if flags & NLM_F_ACK_TLVS == 0 {
        return Ok((error, None));
    }
    let tlvs = payload.get(4..).ok_or(NlaError::Truncated)?;
    Ok((error, ext_msg(tlvs)?))
}

#[cfg(test)]
// Host tests: their arithmetic is on known values, and an overflow fails the test.
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    fn genl_msg(buf: &mut [u8]) -> &[u8] {
        let mut w = MsgWriter::new_genl(buf, 0x20, NLM_F_REQUEST | NLM_F_ACK, 7, 5, 1).unwrap();
        w.put_u8(1, 0xab).unwrap();
        w.put_u16(2, 0x1234).unwrap();
        w.put_u32(3, 0xdead_beef).unwrap();
        w.put_u64(4, 0x0102_0304_0506_0708).unwrap();
        w.put_flag(5).unwrap();
        w.put_str(6, "r0").unwrap();
        w.put_str(7, "").unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn round_trip() {
        let mut buf = [0xffu8; 256];
        let m = genl_msg(&mut buf);
        // 16 + 4 + u8 8 + u16 8 + u32 8 + u64 12 + flag 4 + "r0\0" 8 + "\0" 8
        assert_eq!(m.len(), 16 + 4 + 8 + 8 + 8 + 12 + 4 + 8 + 8);
        assert_eq!(m.len() % 4, 0);
        let msgs: [Msg<'_>; 1] = {
            let mut it = MsgIter::new(m);
            let a = it.next().unwrap().unwrap();
            assert!(it.next().is_none());
            [a]
        };
        let msg = msgs[0];
        assert_eq!(msg.len as usize, m.len());
        assert_eq!(msg.nlmsg_type, 0x20);
        assert_eq!(msg.flags, NLM_F_REQUEST | NLM_F_ACK);
        assert_eq!(msg.seq, 7);
        assert_eq!(msg.pid, 0);
        let g = msg.genl().unwrap();
        assert_eq!((g.cmd, g.version), (5, 1));
        let mut it = g.attrs();
        let mut next = || it.next().unwrap().unwrap();
        assert_eq!(as_u8(next().1).unwrap(), 0xab);
        assert_eq!(as_u16(next().1).unwrap(), 0x1234);
        assert_eq!(as_u32(next().1).unwrap(), 0xdead_beef);
        let (t, p) = next();
        assert_eq!((t, as_u64(p).unwrap()), (4, 0x0102_0304_0506_0708));
        assert_eq!(next(), (5, &[][..]));
        let (t, p) = next();
        assert_eq!((t, p, as_str(p).unwrap()), (6, &b"r0\0"[..], "r0"));
        assert_eq!(as_str(next().1).unwrap(), "");
        assert!(it.next().is_none());
        assert_eq!(
            find_attr(g.attrs, 3).unwrap(),
            Some(&0xdead_beefu32.to_ne_bytes()[..])
        );
        assert_eq!(find_attr(g.attrs, 9).unwrap(), None);
    }

    #[test]
    fn padding_is_zeroed_and_aligned() {
        let mut buf = [0xffu8; 64];
        let mut w = MsgWriter::new_genl(&mut buf, 0x20, 0, 1, 1, 1).unwrap();
        for (i, s) in ["", "a", "ab", "abc", "abcd"].iter().enumerate() {
            let before = w.msg_len();
            w.put_str(i as u16, s).unwrap();
            assert_eq!(w.msg_len() % NLA_ALIGNTO, 0);
            assert_eq!(w.msg_len() - before, align4(4 + s.len() + 1).unwrap());
        }
        let m = w.finish().unwrap();
        // nla_len excludes the padding; the padding itself is zero.
        let area = &m[20..];
        assert_eq!(&area[0..2], &5u16.to_ne_bytes());
        assert_eq!(&area[4..8], &[0, 0, 0, 0]);
        assert_eq!(&area[8..10], &6u16.to_ne_bytes());
        assert_eq!(&area[12..16], &[b'a', 0, 0, 0]);
        assert_eq!(align4(0), Some(0));
        assert_eq!(align4(1), Some(4));
        assert_eq!(align4(4), Some(4));
        assert_eq!(align4(usize::MAX), None);
    }

    #[test]
    fn nested_round_trip() {
        let mut buf = [0u8; 128];
        let mut w = MsgWriter::new_genl(&mut buf, GENL_ID_CTRL, 0, 1, 1, 2).unwrap();
        w.put_u16(CTRL_ATTR_FAMILY_ID, 0x10).unwrap();
        let outer = w.begin_nested(CTRL_ATTR_MCAST_GROUPS).unwrap();
        let inner = w.begin_nested(1).unwrap();
        w.put_u32(CTRL_ATTR_MCAST_GRP_ID, 0x10).unwrap();
        w.put_str(CTRL_ATTR_MCAST_GRP_NAME, "notify").unwrap();
        // Closing the outer nest first is refused.
        let outer = match w.end_nested(outer) {
            Err(NlaError::BadNesting) => NestToken {
                start: 28,
                depth: 1,
            },
            r => panic!("{r:?}"),
        };
        w.end_nested(inner).unwrap();
        w.end_nested(outer).unwrap();
        w.put_flag(9).unwrap();
        let m = w.finish().unwrap();
        let msg = MsgIter::new(m).next().unwrap().unwrap();
        let g = msg.genl().unwrap();
        let groups = find_attr(g.attrs, CTRL_ATTR_MCAST_GROUPS).unwrap().unwrap();
        // The raw type carries NLA_F_NESTED, the iterator strips it.
        assert_eq!(
            read_u16(g.attrs, 8 + 2).unwrap(),
            CTRL_ATTR_MCAST_GROUPS | NLA_F_NESTED
        );
        let mut outer_it = AttrIter::new(groups);
        let (t, grp) = outer_it.next().unwrap().unwrap();
        assert_eq!(t, 1);
        assert!(outer_it.next().is_none());
        let id = find_attr(grp, CTRL_ATTR_MCAST_GRP_ID).unwrap().unwrap();
        let name = find_attr(grp, CTRL_ATTR_MCAST_GRP_NAME).unwrap().unwrap();
        assert_eq!(
            (as_u32(id).unwrap(), as_str(name).unwrap()),
            (0x10, "notify")
        );
        assert_eq!(find_attr(g.attrs, 9).unwrap(), Some(&[][..]));
    }

    #[test]
    fn unclosed_nest_and_foreign_token_fail() {
        let mut buf = [0u8; 64];
        let mut w = MsgWriter::new_genl(&mut buf, 0x20, 0, 1, 1, 1).unwrap();
        let _t = w.begin_nested(1).unwrap();
        assert_eq!(w.finish(), Err(NlaError::BadNesting));

        let mut buf = [0u8; 64];
        let mut w = MsgWriter::new_genl(&mut buf, 0x20, 0, 1, 1, 1).unwrap();
        assert_eq!(
            w.end_nested(NestToken {
                start: 20,
                depth: 0
            }),
            Err(NlaError::BadNesting)
        );
        w.put_u32(1, 1).unwrap();
        let t = w.begin_nested(2).unwrap();
        // A token pointing at a non-nested attribute is refused.
        assert_eq!(
            w.end_nested(NestToken {
                start: 20,
                depth: t.depth
            }),
            Err(NlaError::BadNesting)
        );
        // A token past the written data is refused.
        assert_eq!(
            w.end_nested(NestToken {
                start: 60,
                depth: t.depth
            }),
            Err(NlaError::BadNesting)
        );
        w.end_nested(t).unwrap();
        assert!(w.finish().is_ok());
    }

    #[test]
    fn writer_overflow_errors_and_keeps_message() {
        for n in 0..20 {
            let mut buf = [0u8; 20];
            assert_eq!(
                MsgWriter::new_genl(&mut buf[..n], 1, 0, 0, 0, 0).err(),
                Some(NlaError::NoSpace)
            );
        }
        assert!(MsgWriter::new(&mut [0u8; 15], 1, 0, 0).is_err());
        let mut buf = [0u8; 20];
        let w = MsgWriter::new_genl(&mut buf, 1, 0, 0, 0, 0).unwrap();
        assert_eq!(w.finish().unwrap().len(), 20);

        let mut buf = [0u8; 31];
        let mut w = MsgWriter::new_genl(&mut buf, 0x20, 0, 3, 1, 1).unwrap();
        w.put_u32(1, 5).unwrap(); // 28
        assert_eq!(w.put_u8(2, 1), Err(NlaError::NoSpace)); // needs 8
        assert_eq!(w.put_flag(2), Err(NlaError::NoSpace)); // 28 + 4 > 31
        assert_eq!(w.put_u64(2, 1), Err(NlaError::NoSpace));
        assert_eq!(w.put_u16(2, 1), Err(NlaError::NoSpace));
        assert_eq!(w.put_u32(2, 1), Err(NlaError::NoSpace));
        assert_eq!(w.put_str(2, "x"), Err(NlaError::NoSpace));
        assert_eq!(w.begin_nested(2).err(), Some(NlaError::NoSpace));
        assert_eq!(w.put_str(2, "a\0b"), Err(NlaError::InteriorNul));
        assert_eq!(w.msg_len(), 28);
        assert_eq!(w.seq(), 3);
        let m = w.finish().unwrap();
        assert_eq!(m.len(), 28);
        assert_eq!(read_u32(m, 0), Some(28));

        // nla_len is 16 bits.
        let mut big = [0u8; 70_000];
        let mut w = MsgWriter::new_genl(&mut big, 0x20, 0, 1, 1, 1).unwrap();
        let payload = [7u8; 65_532];
        assert_eq!(w.put_bytes(1, &payload[..65_531]), Ok(()));
        assert_eq!(w.put_bytes(1, &payload), Err(NlaError::TooLong));
        let long = core::str::from_utf8(&[b'x'; 65_531]).unwrap();
        assert_eq!(w.put_str(1, long), Err(NlaError::TooLong));
        let mut big = [0u8; 70_000];
        let mut w = MsgWriter::new_genl(&mut big, 0x20, 0, 1, 1, 1).unwrap();
        let t = w.begin_nested(1).unwrap();
        w.put_bytes(2, &payload[..65_528]).unwrap();
        assert_eq!(w.end_nested(t), Err(NlaError::TooLong));
    }

    fn hdr(len: u32, ty: u16, flags: u16, seq: u32) -> [u8; 16] {
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&len.to_ne_bytes());
        h[4..6].copy_from_slice(&ty.to_ne_bytes());
        h[6..8].copy_from_slice(&flags.to_ne_bytes());
        h[8..12].copy_from_slice(&seq.to_ne_bytes());
        h[12..16].copy_from_slice(&1234u32.to_ne_bytes());
        h
    }

    #[test]
    fn msg_iter_multiple_and_truncation() {
        let mut d = [0u8; 64];
        d[0..16].copy_from_slice(&hdr(21, 0x20, NLM_F_MULTI, 1)); // 5-byte payload, padded to 24
        d[16..21].copy_from_slice(b"hello");
        d[24..40].copy_from_slice(&hdr(20, NLMSG_DONE, NLM_F_MULTI, 1));
        let whole = &d[..44];
        let v: [_; 2] = {
            let mut it = MsgIter::new(whole);
            let a = it.next().unwrap().unwrap();
            let b = it.next().unwrap().unwrap();
            assert!(it.next().is_none());
            [a, b]
        };
        assert_eq!(v[0].payload, b"hello");
        assert_eq!(v[0].pid, 1234);
        assert_eq!((v[1].nlmsg_type, v[1].payload.len()), (NLMSG_DONE, 4));
        assert_eq!(v[1].done().unwrap(), (0, None));
        // Every cut inside the second message is an error after the first message.
        for cut in 25..44 {
            let mut it = MsgIter::new(&whole[..cut]);
            assert!(it.next().unwrap().is_ok());
            assert!(it.next().unwrap().is_err(), "cut {cut}");
            assert!(it.next().is_none());
        }
        // A cut inside the first message's padding is tolerated, inside its data is not.
        for cut in 1..21 {
            let mut it = MsgIter::new(&whole[..cut]);
            assert_eq!(it.next(), Some(Err(NlaError::Truncated)), "cut {cut}");
            assert_eq!(it.next(), None);
        }
        assert_eq!(MsgIter::new(&whole[..22]).count(), 1);
        // nlmsg_len below the header size.
        for len in 0..16 {
            let h = hdr(len, 0x20, 0, 1);
            let mut it = MsgIter::new(&h);
            assert_eq!(it.next(), Some(Err(NlaError::BadLength)));
            assert_eq!(it.next(), None);
        }
        assert_eq!(MsgIter::new(&[]).next(), None);
        assert_eq!(
            MsgIter::new(&hdr(u32::MAX, 1, 0, 0)).next(),
            Some(Err(NlaError::Truncated))
        );
    }

    #[test]
    fn attr_iter_truncation() {
        let mut buf = [0u8; 64];
        let mut w = MsgWriter::new(&mut buf, 0x20, 0, 1).unwrap();
        w.put_u32(1, 9).unwrap();
        w.put_str(2, "abc").unwrap();
        let m = w.finish().unwrap();
        let area = &m[16..];
        assert_eq!(area.len(), 16);
        assert_eq!(AttrIter::new(area).filter(|r| r.is_ok()).count(), 2);
        for cut in 1..area.len() {
            let part = &area[..cut];
            let mut it = AttrIter::new(part);
            let results = [it.next(), it.next(), it.next()];
            if cut < 8 {
                assert!(matches!(results[0], Some(Err(_))), "cut {cut}");
                assert!(results[1].is_none());
            } else if cut > 8 {
                // Second attribute: header 4 + "abc\0" = 8, so cuts at 9..15 break it.
                assert!(matches!(results[0], Some(Ok(_))));
                assert!(matches!(results[1], Some(Err(_))), "cut {cut}");
                assert!(results[2].is_none());
            }
            if cut != 8 {
                assert!(find_attr(part, 1).is_err(), "cut {cut}");
            }
        }
        for l in 0..4u16 {
            let mut a = [0u8; 8];
            a[0..2].copy_from_slice(&l.to_ne_bytes());
            assert_eq!(AttrIter::new(&a).next(), Some(Err(NlaError::BadLength)));
        }
        // Flags are stripped from the type.
        let mut a = [0u8; 4];
        a[0..2].copy_from_slice(&4u16.to_ne_bytes());
        a[2..4].copy_from_slice(&(3 | NLA_F_NESTED | NLA_F_NET_BYTEORDER).to_ne_bytes());
        assert_eq!(AttrIter::new(&a).next(), Some(Ok((3, &[][..]))));
    }

    #[test]
    fn payload_decoders() {
        assert_eq!(as_u8(&[]), Err(NlaError::BadSize));
        assert_eq!(as_u8(&[1, 2]), Err(NlaError::BadSize));
        assert_eq!(as_u16(&[1]), Err(NlaError::BadSize));
        assert_eq!(as_u16(&[1, 2, 3]), Err(NlaError::BadSize));
        assert_eq!(as_u32(&[1, 2, 3]), Err(NlaError::BadSize));
        assert_eq!(as_u32(&[0; 8]), Err(NlaError::BadSize));
        assert_eq!(as_u64(&[0; 4]), Err(NlaError::BadSize));
        assert_eq!(as_u64(&[0; 9]), Err(NlaError::BadSize));
        assert_eq!(as_str(b"abc"), Ok("abc"));
        assert_eq!(as_str(b"abc\0"), Ok("abc"));
        assert_eq!(as_str(b"abc\0\0"), Ok("abc\0"));
        assert_eq!(as_str(b""), Ok(""));
        assert_eq!(as_str(b"\xff\0"), Err(NlaError::BadUtf8));
        assert_eq!(parse_genl(&[1, 2, 0]), Err(NlaError::Truncated));
        assert_eq!(parse_genl(&[1, 2, 0, 0]).unwrap().attrs, &[][..]);
    }

    /// Builds an `NLMSG_ERROR` payload: error, echoed header of a request with `orig_payload`,
    /// the payload itself unless capped, then an optional extack message.
    fn error_payload<'a>(
        out: &'a mut [u8],
        error: i32,
        capped: bool,
        orig_payload: &[u8],
        msg: Option<&str>,
    ) -> (u16, &'a [u8]) {
        let orig_len = (16 + orig_payload.len()) as u32;
        out[0..4].copy_from_slice(&error.to_ne_bytes());
        out[4..20].copy_from_slice(&hdr(orig_len, 0x20, NLM_F_REQUEST | NLM_F_ACK, 9));
        let mut n = 20;
        let mut flags = 0;
        if capped {
            flags |= NLM_F_CAPPED;
        } else {
            out[n..n + orig_payload.len()].copy_from_slice(orig_payload);
            n = align4(n + orig_payload.len()).unwrap();
        }
        if let Some(m) = msg {
            flags |= NLM_F_ACK_TLVS;
            let mut tmp = [0u8; 128];
            let mut w = MsgWriter::new(&mut tmp, 0, 0, 0).unwrap();
            w.put_u32(NLMSGERR_ATTR_OFFS, 24).unwrap();
            w.put_str(NLMSGERR_ATTR_MSG, m).unwrap();
            let tlvs = &w.finish().unwrap()[16..];
            out[n..n + tlvs.len()].copy_from_slice(tlvs);
            n += tlvs.len();
        }
        (flags, &out[..n])
    }

    #[test]
    fn error_messages() {
        let mut o = [0u8; 256];
        let (f, p) = error_payload(&mut o, 0, true, &[], None);
        assert_eq!(parse_error(f, p), Ok((0, None)));
        let (f, p) = error_payload(&mut o, -22, true, &[1, 2, 3, 4, 5], Some("bad name"));
        assert_eq!(parse_error(f, p), Ok((-22, Some("bad name"))));
        let (f, p) = error_payload(&mut o, -2, false, &[1, 2, 3, 4, 5], Some("gone"));
        assert_eq!(parse_error(f, p), Ok((-2, Some("gone"))));
        let (f, p) = error_payload(&mut o, -2, false, &[1, 2, 3, 4, 5], None);
        assert_eq!(parse_error(f, p), Ok((-2, None)));

        // Every truncation of every shape errors (or, without TLVs, still finds the errno).
        for (capped, msg) in [
            (true, None),
            (true, Some("m")),
            (false, None),
            (false, Some("m")),
        ] {
            let mut o = [0u8; 256];
            let (f, p) = error_payload(&mut o, -1, capped, &[9; 7], msg);
            assert!(parse_error(f, p).is_ok());
            let needed = if capped { 20 } else { 4 + 16 + 7 };
            let tlv_start = align4(needed).unwrap();
            for cut in 0..p.len() {
                let r = parse_error(f, &p[..cut]);
                // Cutting between whole extack attributes cannot be told from their absence, nor
                // can cutting the final padding; every other cut is an error.
                let boundary = cut >= needed && (cut <= tlv_start || cut == tlv_start + 8);
                if msg.is_some() && cut >= tlv_start + 8 + 6 {
                    assert_eq!(r, Ok((-1, msg)));
                    continue;
                }
                if cut < needed || (msg.is_some() && !boundary) {
                    assert!(r.is_err(), "capped {capped} msg {msg:?} cut {cut}: {r:?}");
                } else {
                    assert_eq!(r, Ok((-1, None)), "capped {capped} msg {msg:?} cut {cut}");
                }
            }
        }
        // An echoed length below the header size.
        let mut p = [0u8; 20];
        p[4..8].copy_from_slice(&3u32.to_ne_bytes());
        assert_eq!(parse_error(0, &p), Err(NlaError::BadLength));
        assert_eq!(parse_error(NLM_F_CAPPED, &p), Ok((0, None)));
        // Bad UTF-8 in the message.
        let mut o = [0u8; 256];
        let (f, p) = error_payload(&mut o, -1, true, &[], Some("x"));
        let mut q = [0u8; 256];
        q[..p.len()].copy_from_slice(p);
        let pos = p.len() - 4; // "x\0" padded: 'x' sits 4 bytes before the end
        q[pos] = 0xff;
        assert_eq!(parse_error(f, &q[..p.len()]), Err(NlaError::BadUtf8));

        // NLMSG_DONE.
        assert_eq!(parse_done(0, &[]), Ok((0, None)));
        assert_eq!(parse_done(0, &(-5i32).to_ne_bytes()), Ok((-5, None)));
        assert_eq!(parse_done(0, &[1, 2]), Err(NlaError::Truncated));
        let mut d = [0u8; 32];
        d[0..4].copy_from_slice(&(-5i32).to_ne_bytes());
        d[4..6].copy_from_slice(&7u16.to_ne_bytes());
        d[6..8].copy_from_slice(&NLMSGERR_ATTR_MSG.to_ne_bytes());
        d[8..11].copy_from_slice(b"no\0");
        assert_eq!(parse_done(NLM_F_ACK_TLVS, &d[..12]), Ok((-5, Some("no"))));
        assert!(parse_done(NLM_F_ACK_TLVS, &d[..10]).is_err());
    }

    #[test]
    fn constants_match_uapi() {
        assert_eq!(NLM_F_DUMP, 0x300);
        assert_eq!(NLA_TYPE_MASK, 0x3fff);
        assert_eq!(GENL_ID_CTRL, NLMSG_MIN_TYPE);
        assert_eq!(NLMSGERR_LEN, 20);
        assert_eq!(NlaError::Truncated.as_str(), "truncated netlink data");
    }

    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }
    }

    fn consume(buf: &[u8]) -> usize {
        let mut n = 0;
        for m in MsgIter::new(buf) {
            let Ok(m) = m else {
                n += 1;
                continue;
            };
            n += usize::from(m.error().is_ok()) + usize::from(m.done().is_ok());
            if let Ok(g) = m.genl() {
                for a in g.attrs() {
                    let Ok((_, p)) = a else { break };
                    n += usize::from(as_u8(p).is_ok())
                        + usize::from(as_u16(p).is_ok())
                        + usize::from(as_u32(p).is_ok())
                        + usize::from(as_u64(p).is_ok())
                        + usize::from(as_str(p).is_ok());
                    n += AttrIter::new(p).count();
                }
            }
        }
        for f in [
            0,
            NLM_F_CAPPED,
            NLM_F_ACK_TLVS,
            NLM_F_CAPPED | NLM_F_ACK_TLVS,
        ] {
            n += usize::from(parse_error(f, buf).is_ok()) + usize::from(parse_done(f, buf).is_ok());
        }
        n + AttrIter::new(buf).count()
    }

    #[test]
    fn fuzz_no_panic() {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        // A valid seed datagram: a genl message with attributes and nesting, an error with an
        // echoed request and extack, and a done.
        let mut seed = [0u8; 256];
        let mut seed_len = 0;
        {
            let mut tmp = [0u8; 128];
            let mut w = MsgWriter::new_genl(&mut tmp, 0x20, NLM_F_MULTI, 1, 1, 1).unwrap();
            w.put_str(1, "r0").unwrap();
            let t = w.begin_nested(7).unwrap();
            let t2 = w.begin_nested(1).unwrap();
            w.put_u32(2, 3).unwrap();
            w.end_nested(t2).unwrap();
            w.end_nested(t).unwrap();
            w.put_u64(8, 42).unwrap();
            let m = w.finish().unwrap();
            seed[..m.len()].copy_from_slice(m);
            seed_len += m.len();
            let mut o = [0u8; 128];
            let (f, p) = error_payload(&mut o, -22, false, &[1, 2, 3], Some("why"));
            let h = hdr(16 + p.len() as u32, NLMSG_ERROR, f, 1);
            seed[seed_len..seed_len + 16].copy_from_slice(&h);
            seed[seed_len + 16..seed_len + 16 + p.len()].copy_from_slice(p);
            seed_len += align4(16 + p.len()).unwrap();
            let h = hdr(20, NLMSG_DONE, NLM_F_MULTI, 1);
            seed[seed_len..seed_len + 16].copy_from_slice(&h);
            seed_len += 20;
        }
        assert!(consume(&seed[..seed_len]) > 0);
        let mut buf = [0u8; 256];
        let mut total = 0usize;
        for i in 0..200_000u32 {
            let len = (rng.next() % 257) as usize;
            let len = len.min(buf.len());
            if i % 2 == 0 {
                for b in buf[..len].iter_mut() {
                    *b = rng.next() as u8;
                }
                // Make small lengths likely so headers parse and deeper code runs.
                if len >= 4 && rng.next() % 2 == 0 {
                    let l = (rng.next() % (len as u64 + 8)) as u32;
                    buf[0..4].copy_from_slice(&l.to_ne_bytes());
                }
            } else {
                buf[..seed_len].copy_from_slice(&seed[..seed_len]);
                for _ in 0..(1 + rng.next() % 4) {
                    let pos = (rng.next() % seed_len as u64) as usize;
                    buf[pos] = match rng.next() % 4 {
                        0 => rng.next() as u8,
                        1 => buf[pos] ^ (1 << (rng.next() % 8)),
                        2 => 0,
                        _ => 0xff,
                    };
                }
            }
            let l = if i % 2 == 0 {
                len
            } else {
                (rng.next() % (seed_len as u64 + 1)) as usize
            };
            total = total.wrapping_add(consume(&buf[..l]));
        }
        assert!(total > 0);
    }
}
