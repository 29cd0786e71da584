// SPDX-License-Identifier: GPL-2.0

//! Generic netlink transport: a `NETLINK_GENERIC` socket, family resolution through `nlctrl`,
//! request/acknowledge and dump exchanges, and the multicast event stream.
//!
//! Encoding and decoding are [`hark_proto::nla`]'s; this file adds the socket, the exchange
//! rules (sequence numbers, acknowledgements, `NLMSG_DONE`, extended ACK messages) and owned
//! copies of the received messages.

use hark_proto::drbd_genl::{Attr, AttrKind, DiskState, EventType, Role};
use hark_proto::nla::{self, MsgIter, MsgWriter, NlaError};
use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::mem;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// Version put in the `genlmsghdr` of requests to `nlctrl` (the controller's own version).
const CTRL_VERSION: u8 = 2;
/// Name of the controller family, whose id is fixed.
const CTRL_NAME: &str = "nlctrl";
/// Room for one request; the largest `drbd_rs` request is a few hundred bytes.
const SEND_BUF: usize = 32 * 1024;
/// Initial receive buffer; grown when the kernel sends a larger datagram.
const RECV_BUF: usize = 32 * 1024;

/// Why a generic netlink exchange failed.
#[derive(Debug)]
pub enum Error {
    /// A socket system call failed.
    Io(io::Error),
    /// No answer within the receive timeout.
    Timeout,
    /// The kernel refused the request with `errno` (positive), and perhaps said why.
    Kernel {
        /// Name of the family the request went to (or its id, if it was not resolved here).
        family: String,
        /// The positive errno, e.g. `libc::EINVAL`.
        errno: i32,
        /// The extended ACK message, if the kernel sent one.
        message: Option<String>,
    },
    /// The controller does not know the family: its module is not loaded.
    FamilyMissing {
        /// The family name that was looked up.
        name: String,
    },
    /// The request could not be encoded (too large, string with NUL, unbalanced nest).
    Encode(NlaError),
    /// The kernel sent a message that does not decode.
    Malformed(NlaError),
    /// The kernel's answer does not follow the protocol.
    Protocol(String),
    /// A dump was interrupted by a concurrent change (`NLM_F_DUMP_INTR`); retry it.
    DumpInterrupted,
}

/// The symbolic name of an errno, for the messages users see.
fn errno_name(errno: i32) -> Option<&'static str> {
    Some(match errno {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ESRCH => "ESRCH",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::ENXIO => "ENXIO",
        libc::E2BIG => "E2BIG",
        libc::EBADF => "EBADF",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::ENOTBLK => "ENOTBLK",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::EXDEV => "EXDEV",
        libc::ENODEV => "ENODEV",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::ENFILE => "ENFILE",
        libc::EMFILE => "EMFILE",
        libc::ENOTTY => "ENOTTY",
        libc::EFBIG => "EFBIG",
        libc::ENOSPC => "ENOSPC",
        libc::EROFS => "EROFS",
        libc::EMLINK => "EMLINK",
        libc::EPIPE => "EPIPE",
        libc::ERANGE => "ERANGE",
        libc::EDEADLK => "EDEADLK",
        libc::ENAMETOOLONG => "ENAMETOOLONG",
        libc::ENOSYS => "ENOSYS",
        libc::ENOTEMPTY => "ENOTEMPTY",
        libc::ENODATA => "ENODATA",
        libc::ETIME => "ETIME",
        libc::ENOLINK => "ENOLINK",
        libc::EPROTO => "EPROTO",
        libc::EBADMSG => "EBADMSG",
        libc::EOVERFLOW => "EOVERFLOW",
        libc::EMSGSIZE => "EMSGSIZE",
        libc::EPROTONOSUPPORT => "EPROTONOSUPPORT",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EAFNOSUPPORT => "EAFNOSUPPORT",
        libc::EADDRINUSE => "EADDRINUSE",
        libc::ENETDOWN => "ENETDOWN",
        libc::ENETUNREACH => "ENETUNREACH",
        libc::ECONNABORTED => "ECONNABORTED",
        libc::ECONNRESET => "ECONNRESET",
        libc::ENOBUFS => "ENOBUFS",
        libc::EISCONN => "EISCONN",
        libc::ENOTCONN => "ENOTCONN",
        libc::ESHUTDOWN => "ESHUTDOWN",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::EHOSTUNREACH => "EHOSTUNREACH",
        libc::EALREADY => "EALREADY",
        libc::EINPROGRESS => "EINPROGRESS",
        libc::ESTALE => "ESTALE",
        libc::EDQUOT => "EDQUOT",
        libc::ECANCELED => "ECANCELED",
        libc::ENOMEDIUM => "ENOMEDIUM",
        libc::EMEDIUMTYPE => "EMEDIUMTYPE",
        libc::ENOKEY => "ENOKEY",
        _ => return None,
    })
}

/// The C library's description of `errno` ("Invalid argument"), without Rust's
/// " (os error N)" suffix.
fn errno_text(errno: i32) -> String {
    let s = io::Error::from_raw_os_error(errno).to_string();
    let suffix = format!(" (os error {errno})");
    match s.strip_suffix(&suffix) {
        Some(t) => t.to_owned(),
        None => s,
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "generic netlink socket: {e}"),
            Error::Timeout => f.write_str("timed out waiting for the kernel"),
            Error::Kernel {
                family,
                errno,
                message,
            } => {
                write!(f, "{family}: {}", errno_text(*errno))?;
                match errno_name(*errno) {
                    Some(n) => write!(f, " ({n})")?,
                    None => write!(f, " (errno {errno})")?,
                }
                if let Some(m) = message {
                    write!(f, ": {m}")?;
                }
                Ok(())
            }
            Error::FamilyMissing { name } => write!(
                f,
                "generic netlink family '{name}' not found: is the {name} module loaded?"
            ),
            Error::Encode(e) => write!(f, "cannot encode the request: {e}"),
            Error::Malformed(e) => write!(f, "malformed netlink message from the kernel: {e}"),
            Error::Protocol(s) => write!(f, "generic netlink protocol error: {s}"),
            Error::DumpInterrupted => {
                f.write_str("dump interrupted by a concurrent change, please retry")
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

/// A generic netlink family as the controller describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Family {
    /// Family name.
    pub name: String,
    /// Family id: the `nlmsg_type` of its messages.
    pub id: u16,
    /// Family version.
    pub version: u32,
    /// Highest attribute number.
    pub max_attr: u32,
    /// Multicast groups: name and group id (for [`GenlSocket::subscribe`]).
    pub mcast_groups: Vec<(String, u32)>,
}

impl Family {
    /// Decodes a `CTRL_CMD_NEWFAMILY` message (reply to `CTRL_CMD_GETFAMILY`, or one entry of
    /// its dump).
    pub fn from_ctrl_msg(m: &OwnedMsg) -> Result<Family, Error> {
        let need = |t: u16, what: &str| {
            m.get(t)
                .ok_or_else(|| Error::Protocol(format!("family description without {what}")))
        };
        let id = nla::as_u16(need(nla::CTRL_ATTR_FAMILY_ID, "id")?).map_err(Error::Malformed)?;
        let name = nla::as_str(need(nla::CTRL_ATTR_FAMILY_NAME, "name")?)
            .map_err(Error::Malformed)?
            .to_owned();
        let opt_u32 = |t: u16| {
            m.get(t)
                .map(nla::as_u32)
                .transpose()
                .map(|v| v.unwrap_or(0))
                .map_err(Error::Malformed)
        };
        let version = opt_u32(nla::CTRL_ATTR_VERSION)?;
        let max_attr = opt_u32(nla::CTRL_ATTR_MAXATTR)?;
        let mut mcast_groups = Vec::new();
        if let Some(groups) = m.get(nla::CTRL_ATTR_MCAST_GROUPS) {
            for g in nla::AttrIter::new(groups) {
                let (_, grp) = g.map_err(Error::Malformed)?;
                let gname =
                    nla::find_attr(grp, nla::CTRL_ATTR_MCAST_GRP_NAME).map_err(Error::Malformed)?;
                let gid =
                    nla::find_attr(grp, nla::CTRL_ATTR_MCAST_GRP_ID).map_err(Error::Malformed)?;
                if let (Some(gname), Some(gid)) = (gname, gid) {
                    mcast_groups.push((
                        nla::as_str(gname).map_err(Error::Malformed)?.to_owned(),
                        nla::as_u32(gid).map_err(Error::Malformed)?,
                    ));
                }
            }
        }
        Ok(Family {
            name,
            id,
            version,
            max_attr,
            mcast_groups,
        })
    }

    /// The id of the multicast group `name`.
    pub fn mcast_group(&self, name: &str) -> Option<u32> {
        self.mcast_groups
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, id)| *id)
    }
}

/// A decoded attribute value of the `drbd_rs` family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttrValue<'a> {
    /// A flag that is present.
    Flag,
    /// A `u8`.
    U8(u8),
    /// A `u32`.
    U32(u32),
    /// A `u64`.
    U64(u64),
    /// A string.
    Str(&'a str),
    /// Raw bytes of a fixed size.
    Bytes(&'a [u8]),
}

/// An owned copy of a received generic netlink message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedMsg {
    /// `nlmsg_type`: the family id.
    pub nlmsg_type: u16,
    /// `nlmsg_flags`.
    pub flags: u16,
    /// `genlmsghdr.cmd`.
    pub cmd: u8,
    /// `genlmsghdr.version`.
    pub version: u8,
    /// Top-level attributes in order: type (without `NLA_F_*` flags) and payload.
    pub attrs: Vec<(u16, Vec<u8>)>,
}

impl OwnedMsg {
    /// Copies a generic netlink message.
    pub fn parse(m: &nla::Msg<'_>) -> Result<OwnedMsg, NlaError> {
        let g = m.genl()?;
        let attrs = g
            .attrs()
            .map(|a| a.map(|(t, p)| (t, p.to_vec())))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(OwnedMsg {
            nlmsg_type: m.nlmsg_type,
            flags: m.flags,
            cmd: g.cmd,
            version: g.version,
            attrs,
        })
    }

    /// The payload of the first attribute of number `attr_type`.
    pub fn get(&self, attr_type: u16) -> Option<&[u8]> {
        self.attrs
            .iter()
            .find(|(t, _)| *t == attr_type)
            .map(|(_, p)| p.as_slice())
    }

    /// The first `a` attribute, decoded as its [`Attr::kind`] says; string lengths are checked
    /// against the family's limits.
    pub fn value(&self, a: Attr) -> Result<Option<AttrValue<'_>>, Error> {
        let Some(p) = self.get(a as u16) else {
            return Ok(None);
        };
        let bad = |e: NlaError| Error::Protocol(format!("attribute {a:?}: {e}"));
        Ok(Some(match a.kind() {
            AttrKind::Flag if p.is_empty() => AttrValue::Flag,
            AttrKind::Flag => return Err(bad(NlaError::BadSize)),
            AttrKind::U8 => AttrValue::U8(nla::as_u8(p).map_err(bad)?),
            AttrKind::U32 => AttrValue::U32(nla::as_u32(p).map_err(bad)?),
            AttrKind::U64 => AttrValue::U64(nla::as_u64(p).map_err(bad)?),
            AttrKind::String(max) => {
                let s = nla::as_str(p).map_err(bad)?;
                if s.len() > usize::from(max) {
                    return Err(Error::Protocol(format!(
                        "attribute {a:?}: string longer than {max} bytes"
                    )));
                }
                AttrValue::Str(s)
            }
            AttrKind::Bytes(len) if p.len() == usize::from(len) => AttrValue::Bytes(p),
            AttrKind::Bytes(_) => return Err(bad(NlaError::BadSize)),
        }))
    }

    fn wrong_kind(a: Attr, want: &str) -> Error {
        Error::Protocol(format!("attribute {a:?} is a {:?}, not a {want}", a.kind()))
    }

    /// The first `a` attribute as a `u8` (`a` must be a `u8` attribute).
    pub fn get_u8(&self, a: Attr) -> Result<Option<u8>, Error> {
        match self.value(a)? {
            None => Ok(None),
            Some(AttrValue::U8(v)) => Ok(Some(v)),
            Some(_) => Err(Self::wrong_kind(a, "u8")),
        }
    }

    /// The first `a` attribute as a `u32` (`a` must be a `u32` attribute).
    pub fn get_u32(&self, a: Attr) -> Result<Option<u32>, Error> {
        match self.value(a)? {
            None => Ok(None),
            Some(AttrValue::U32(v)) => Ok(Some(v)),
            Some(_) => Err(Self::wrong_kind(a, "u32")),
        }
    }

    /// The first `a` attribute as a `u64` (`a` must be a `u64` attribute).
    pub fn get_u64(&self, a: Attr) -> Result<Option<u64>, Error> {
        match self.value(a)? {
            None => Ok(None),
            Some(AttrValue::U64(v)) => Ok(Some(v)),
            Some(_) => Err(Self::wrong_kind(a, "u64")),
        }
    }

    /// The first `a` attribute as a string (`a` must be a string attribute).
    pub fn get_str(&self, a: Attr) -> Result<Option<&str>, Error> {
        match self.value(a)? {
            None => Ok(None),
            Some(AttrValue::Str(s)) => Ok(Some(s)),
            Some(_) => Err(Self::wrong_kind(a, "string")),
        }
    }

    /// Whether the flag attribute `a` is present.
    pub fn has_flag(&self, a: Attr) -> bool {
        self.get(a as u16).is_some()
    }

    /// The [`Attr::Role`] attribute.
    pub fn role(&self) -> Result<Option<Role>, Error> {
        self.get_u8(Attr::Role)?
            .map(|v| Role::from_u8(v).ok_or_else(|| unknown("role", v)))
            .transpose()
    }

    /// The [`Attr::DiskState`] attribute.
    pub fn disk_state(&self) -> Result<Option<DiskState>, Error> {
        self.get_u8(Attr::DiskState)?
            .map(|v| DiskState::from_u8(v).ok_or_else(|| unknown("disk state", v)))
            .transpose()
    }

    /// The [`Attr::EventType`] attribute.
    pub fn event_type(&self) -> Result<Option<EventType>, Error> {
        self.get_u8(Attr::EventType)?
            .map(|v| EventType::from_u8(v).ok_or_else(|| unknown("event type", v)))
            .transpose()
    }
}

fn unknown(what: &str, v: u8) -> Error {
    Error::Protocol(format!("unknown {what} {v}"))
}

/// One message of a received datagram, decoded enough to route it.
enum Incoming {
    /// A family message.
    Data { seq: u32, pid: u32, msg: OwnedMsg },
    /// `NLMSG_ERROR`: an acknowledgement (`error` 0) or an error.
    Ack {
        seq: u32,
        error: i32,
        message: Option<String>,
    },
    /// `NLMSG_DONE`.
    Done {
        seq: u32,
        flags: u16,
        error: i32,
        message: Option<String>,
    },
}

/// A `NETLINK_GENERIC` socket bound to a kernel-assigned port id; closed when dropped.
#[derive(Debug)]
pub struct GenlSocket {
    fd: OwnedFd,
    portid: u32,
    seq: u32,
    /// Families resolved through this socket, for error messages.
    names: Vec<(u16, String)>,
    groups: Vec<u32>,
    /// Multicast messages received while waiting for a reply.
    pending: VecDeque<OwnedMsg>,
    rbuf: Vec<u8>,
}

/// `setsockopt(fd, level, opt, &v, sizeof(int))`.
fn set_int_opt(fd: &OwnedFd, level: i32, opt: i32, v: i32) -> io::Result<()> {
    // SAFETY: `v` lives across the call and the length passed is its size.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            (&v as *const i32).cast(),
            mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn kernel_addr() -> libc::sockaddr_nl {
    // SAFETY: `sockaddr_nl` is plain old data; all zeroes is a valid value.
    let mut a: libc::sockaddr_nl = unsafe { mem::zeroed() };
    a.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    a
}

impl GenlSocket {
    /// Opens a `NETLINK_GENERIC` socket (close-on-exec) with extended ACK messages and capped
    /// acknowledgements enabled, and no receive timeout.
    pub fn open() -> Result<GenlSocket, Error> {
        // SAFETY: plain system call without pointers.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_GENERIC,
            )
        };
        if raw < 0 {
            return Err(Error::Io(io::Error::last_os_error()));
        }
        // SAFETY: `raw` is a freshly opened descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        for opt in [libc::NETLINK_EXT_ACK, libc::NETLINK_CAP_ACK] {
            match set_int_opt(&fd, libc::SOL_NETLINK, opt, 1) {
                // Kernels before 4.3 / 4.12 lack these; they only make errors less verbose.
                Err(e) if e.raw_os_error() == Some(libc::ENOPROTOOPT) => {}
                r => r?,
            }
        }
        let mut addr = kernel_addr();
        // SAFETY: `addr` is a valid `sockaddr_nl` and the length passed is its size.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_nl).cast(),
                mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(Error::Io(io::Error::last_os_error()));
        }
        let mut len = mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
        // SAFETY: `addr` and `len` are valid for writing and `len` is `addr`'s size.
        let r = unsafe {
            libc::getsockname(
                fd.as_raw_fd(),
                (&mut addr as *mut libc::sockaddr_nl).cast(),
                &mut len,
            )
        };
        if r < 0 {
            return Err(Error::Io(io::Error::last_os_error()));
        }
        Ok(GenlSocket {
            fd,
            portid: addr.nl_pid,
            seq: 0,
            names: vec![(nla::GENL_ID_CTRL, CTRL_NAME.to_owned())],
            groups: Vec::new(),
            pending: VecDeque::new(),
            rbuf: vec![0; RECV_BUF],
        })
    }

    /// The port id the kernel assigned to this socket.
    pub fn portid(&self) -> u32 {
        self.portid
    }

    /// Sets how long a receive waits before failing with [`Error::Timeout`]; `None` waits
    /// forever.
    pub fn set_recv_timeout(&mut self, timeout: Option<Duration>) -> Result<(), Error> {
        let tv = match timeout {
            None => libc::timeval {
                tv_sec: 0,
                tv_usec: 0,
            },
            Some(d) => {
                let mut tv = libc::timeval {
                    tv_sec: libc::time_t::try_from(d.as_secs()).unwrap_or(libc::time_t::MAX),
                    // Below 1_000_000, fits every `suseconds_t`.
                    tv_usec: d.subsec_micros() as libc::suseconds_t,
                };
                if tv.tv_sec == 0 && tv.tv_usec == 0 {
                    // Zero would mean "forever".
                    tv.tv_usec = 1;
                }
                tv
            }
        };
        // SAFETY: `tv` lives across the call and the length passed is its size.
        let r = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(Error::Io(io::Error::last_os_error()));
        }
        Ok(())
    }

    /// Looks up the family `name` with `CTRL_CMD_GETFAMILY`.
    ///
    /// [`Error::FamilyMissing`] if the controller does not know it, or if `name` cannot be a
    /// family name at all (empty, NUL inside, or `GENL_NAMSIZ` bytes or longer).
    pub fn resolve_family(&mut self, name: &str) -> Result<Family, Error> {
        // The controller's policy refuses such names with EINVAL, not ENOENT.
        if name.is_empty() || name.len() >= nla::GENL_NAMSIZ || name.contains('\0') {
            return Err(Error::FamilyMissing {
                name: name.to_owned(),
            });
        }
        let r = self.request(
            nla::GENL_ID_CTRL,
            nla::CTRL_CMD_GETFAMILY,
            CTRL_VERSION,
            |w| w.put_str(nla::CTRL_ATTR_FAMILY_NAME, name),
        );
        let msgs = match r {
            Err(Error::Kernel { errno, .. }) if errno == libc::ENOENT => {
                return Err(Error::FamilyMissing {
                    name: name.to_owned(),
                })
            }
            r => r?,
        };
        let m = msgs
            .iter()
            .find(|m| m.nlmsg_type == nla::GENL_ID_CTRL && m.cmd == nla::CTRL_CMD_NEWFAMILY)
            .ok_or_else(|| Error::Protocol("no family description in the reply".into()))?;
        let fam = Family::from_ctrl_msg(m)?;
        if fam.name != name {
            return Err(Error::Protocol(format!(
                "asked for family '{name}', got '{}'",
                fam.name
            )));
        }
        self.names.retain(|(id, _)| *id != fam.id);
        self.names.push((fam.id, fam.name.clone()));
        Ok(fam)
    }

    /// Sends command `cmd` to family `family_id` with `NLM_F_REQUEST | NLM_F_ACK`, the
    /// attributes `build` puts, and returns the reply messages that came before the
    /// acknowledgement. A refusal is [`Error::Kernel`].
    pub fn request<F>(
        &mut self,
        family_id: u16,
        cmd: u8,
        version: u8,
        build: F,
    ) -> Result<Vec<OwnedMsg>, Error>
    where
        F: FnOnce(&mut MsgWriter<'_>) -> Result<(), NlaError>,
    {
        self.exchange(
            family_id,
            cmd,
            version,
            nla::NLM_F_REQUEST | nla::NLM_F_ACK,
            build,
        )
    }

    /// Sends command `cmd` to family `family_id` as a dump (`NLM_F_REQUEST | NLM_F_DUMP`) and
    /// returns every message up to `NLMSG_DONE`. A dump the kernel marks inconsistent is
    /// [`Error::DumpInterrupted`].
    pub fn dump<F>(
        &mut self,
        family_id: u16,
        cmd: u8,
        version: u8,
        build: F,
    ) -> Result<Vec<OwnedMsg>, Error>
    where
        F: FnOnce(&mut MsgWriter<'_>) -> Result<(), NlaError>,
    {
        self.exchange(
            family_id,
            cmd,
            version,
            nla::NLM_F_REQUEST | nla::NLM_F_DUMP,
            build,
        )
    }

    /// Joins the multicast group `group_id` (see [`Family::mcast_group`]).
    pub fn subscribe(&mut self, group_id: u32) -> Result<(), Error> {
        let id = i32::try_from(group_id)
            .map_err(|_| Error::Protocol(format!("multicast group id {group_id} out of range")))?;
        set_int_opt(
            &self.fd,
            libc::SOL_NETLINK,
            libc::NETLINK_ADD_MEMBERSHIP,
            id,
        )?;
        if !self.groups.contains(&group_id) {
            self.groups.push(group_id);
        }
        Ok(())
    }

    /// The next message of the subscribed multicast groups (of any family: check
    /// `nlmsg_type`). Waits up to the receive timeout.
    pub fn recv_event(&mut self) -> Result<OwnedMsg, Error> {
        if self.groups.is_empty() {
            return Err(Error::Protocol("no multicast group subscribed".into()));
        }
        loop {
            if let Some(m) = self.pending.pop_front() {
                return Ok(m);
            }
            for inc in self.recv_msgs()? {
                if let Incoming::Data { msg, .. } = inc {
                    self.pending.push_back(msg);
                }
            }
        }
    }

    fn family_name(&self, id: u16) -> String {
        match self.names.iter().find(|(i, _)| *i == id) {
            Some((_, n)) => n.clone(),
            None => format!("generic netlink family {id:#x}"),
        }
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        if self.seq == 0 {
            self.seq = 1;
        }
        self.seq
    }

    fn exchange<F>(
        &mut self,
        family_id: u16,
        cmd: u8,
        version: u8,
        flags: u16,
        build: F,
    ) -> Result<Vec<OwnedMsg>, Error>
    where
        F: FnOnce(&mut MsgWriter<'_>) -> Result<(), NlaError>,
    {
        let is_dump = flags & nla::NLM_F_DUMP == nla::NLM_F_DUMP;
        let seq = self.next_seq();
        let mut buf = vec![0u8; SEND_BUF];
        let mut w = MsgWriter::new_genl(&mut buf, family_id, flags, seq, cmd, version)
            .map_err(Error::Encode)?;
        build(&mut w).map_err(Error::Encode)?;
        let msg = w.finish().map_err(Error::Encode)?;
        self.send(msg)?;

        let kernel_err = |s: &Self, error: i32, message: Option<String>| Error::Kernel {
            family: s.family_name(family_id),
            errno: error.checked_neg().unwrap_or(i32::MAX),
            message,
        };
        let mut out = Vec::new();
        let mut interrupted = false;
        loop {
            for inc in self.recv_msgs()? {
                match inc {
                    Incoming::Data {
                        seq: s,
                        pid,
                        msg: m,
                    } => {
                        // Replies carry our sequence number and are addressed to our port.
                        // Port id 0 with our sequence number is taken as a reply too on a
                        // socket without subscriptions (a sender that forgot the port id);
                        // with subscriptions it is an event, which is kept for `recv_event`
                        // like every other message that is not a reply.
                        let reply = s == seq
                            && (pid == self.portid || (pid == 0 && self.groups.is_empty()));
                        if reply {
                            interrupted |= m.flags & nla::NLM_F_DUMP_INTR != 0;
                            out.push(m);
                        } else if !self.groups.is_empty() {
                            self.pending.push_back(m);
                        }
                    }
                    Incoming::Ack {
                        seq: s,
                        error,
                        message,
                    } if s == seq => {
                        if error != 0 {
                            return Err(kernel_err(self, error, message));
                        }
                        if !is_dump {
                            return Ok(out);
                        }
                    }
                    Incoming::Done {
                        seq: s,
                        flags,
                        error,
                        message,
                    } if s == seq && is_dump => {
                        if error != 0 {
                            return Err(kernel_err(self, error, message));
                        }
                        if interrupted || flags & nla::NLM_F_DUMP_INTR != 0 {
                            return Err(Error::DumpInterrupted);
                        }
                        return Ok(out);
                    }
                    // Stale answers to earlier requests.
                    Incoming::Ack { .. } | Incoming::Done { .. } => {}
                }
            }
        }
    }

    fn send(&self, msg: &[u8]) -> Result<(), Error> {
        let addr = kernel_addr();
        loop {
            // SAFETY: `msg` and `addr` are valid for reading for the lengths passed.
            let n = unsafe {
                libc::sendto(
                    self.fd.as_raw_fd(),
                    msg.as_ptr().cast(),
                    msg.len(),
                    0,
                    (&addr as *const libc::sockaddr_nl).cast(),
                    mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(Error::Io(e));
            }
            if n as usize != msg.len() {
                return Err(Error::Protocol(format!(
                    "short send: {n} of {} bytes",
                    msg.len()
                )));
            }
            return Ok(());
        }
    }

    /// One `recvfrom` into the receive buffer: the datagram's full length and the sender's
    /// port id.
    fn recv_from(&mut self, flags: i32) -> Result<(usize, u32), Error> {
        loop {
            let mut addr = kernel_addr();
            let mut len = mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
            // SAFETY: the buffer, `addr` and `len` are valid for writing for the sizes passed.
            let n = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    self.rbuf.as_mut_ptr().cast(),
                    self.rbuf.len(),
                    flags | libc::MSG_TRUNC,
                    (&mut addr as *mut libc::sockaddr_nl).cast(),
                    &mut len,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                return match e.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    Some(libc::EAGAIN) => Err(Error::Timeout),
                    _ => Err(Error::Io(e)),
                };
            }
            return Ok((n as usize, addr.nl_pid));
        }
    }

    /// Receives one datagram from the kernel (datagrams from other ports are dropped) and
    /// decodes its messages.
    fn recv_msgs(&mut self) -> Result<Vec<Incoming>, Error> {
        let n = loop {
            let (size, _) = self.recv_from(libc::MSG_PEEK)?;
            if size > self.rbuf.len() {
                self.rbuf.resize(size, 0);
            }
            let (n, sender) = self.recv_from(0)?;
            if n > self.rbuf.len() {
                return Err(Error::Protocol(format!("datagram of {n} bytes truncated")));
            }
            if sender == 0 {
                break n;
            }
        };
        let mut out = Vec::new();
        for m in MsgIter::new(&self.rbuf[..n]) {
            let m = m.map_err(Error::Malformed)?;
            match m.nlmsg_type {
                nla::NLMSG_ERROR => {
                    let (error, message) = m.error().map_err(Error::Malformed)?;
                    out.push(Incoming::Ack {
                        seq: m.seq,
                        error,
                        message: message.map(str::to_owned),
                    });
                }
                nla::NLMSG_DONE => {
                    let (error, message) = m.done().map_err(Error::Malformed)?;
                    out.push(Incoming::Done {
                        seq: m.seq,
                        flags: m.flags,
                        error,
                        message: message.map(str::to_owned),
                    });
                }
                nla::NLMSG_OVERRUN => {
                    return Err(Error::Protocol("kernel reports lost messages".into()))
                }
                t if t < nla::NLMSG_MIN_TYPE => {}
                _ => out.push(Incoming::Data {
                    seq: m.seq,
                    pid: m.pid,
                    msg: OwnedMsg::parse(&m).map_err(Error::Malformed)?,
                }),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hark_proto::drbd_genl;

    /// A socket with a 5 s timeout, or `None` (with a note) where this host has no generic
    /// netlink.
    fn socket() -> Option<GenlSocket> {
        match GenlSocket::open() {
            Ok(mut s) => {
                s.set_recv_timeout(Some(Duration::from_secs(5))).unwrap();
                Some(s)
            }
            Err(Error::Io(e))
                if matches!(
                    e.raw_os_error(),
                    Some(
                        libc::EAFNOSUPPORT
                            | libc::EPROTONOSUPPORT
                            | libc::EPERM
                            | libc::EACCES
                            | libc::ENOSYS
                    )
                ) =>
            {
                eprintln!("note: skipping, AF_NETLINK/NETLINK_GENERIC is unavailable here: {e}");
                None
            }
            Err(e) => panic!("cannot open a generic netlink socket: {e}"),
        }
    }

    #[test]
    fn resolves_nlctrl() {
        let Some(mut s) = socket() else { return };
        assert_ne!(s.portid(), 0);
        let f = s.resolve_family("nlctrl").unwrap();
        assert_eq!(f.id, nla::GENL_ID_CTRL);
        assert_eq!(f.name, "nlctrl");
        assert!(f.version >= 1);
        assert!(f.mcast_group("notify").is_some(), "{f:?}");
        // The socket stays usable: a second request gets its own answer.
        assert_eq!(s.resolve_family("nlctrl").unwrap(), f);
    }

    #[test]
    fn missing_family() {
        let Some(mut s) = socket() else { return };
        // 16 bytes: too long for any family, known without asking the kernel.
        let e = s.resolve_family("no_such_family_x").unwrap_err();
        assert!(matches!(&e, Error::FamilyMissing { name } if name == "no_such_family_x"));
        // Short enough to be looked up: the controller answers ENOENT.
        let e2 = s.resolve_family("no_such_famx").unwrap_err();
        assert!(matches!(&e2, Error::FamilyMissing { name } if name == "no_such_famx"));
        assert!(matches!(
            s.resolve_family(""),
            Err(Error::FamilyMissing { .. })
        ));
        assert_eq!(
            e.to_string(),
            "generic netlink family 'no_such_family_x' not found: \
             is the no_such_family_x module loaded?"
        );
        let e = Error::FamilyMissing {
            name: drbd_genl::FAMILY_NAME.into(),
        };
        assert_eq!(
            e.to_string(),
            "generic netlink family 'drbd_rs' not found: is the drbd_rs module loaded?"
        );
    }

    #[test]
    fn dump_lists_nlctrl() {
        let Some(mut s) = socket() else { return };
        let msgs = s
            .dump(
                nla::GENL_ID_CTRL,
                nla::CTRL_CMD_GETFAMILY,
                CTRL_VERSION,
                |_| Ok(()),
            )
            .unwrap();
        let fams: Vec<Family> = msgs
            .iter()
            .map(|m| Family::from_ctrl_msg(m).unwrap())
            .collect();
        assert!(fams.iter().any(|f| f.name == "nlctrl" && f.id == 0x10));
        assert!(msgs.iter().all(|m| m.flags & nla::NLM_F_MULTI != 0));
        // A request after the dump is answered normally.
        assert_eq!(s.resolve_family("nlctrl").unwrap().id, 0x10);
    }

    #[test]
    fn kernel_error_carries_errno() {
        let Some(mut s) = socket() else { return };
        // GETFAMILY without a name or id is refused with EINVAL.
        let e = s
            .request(
                nla::GENL_ID_CTRL,
                nla::CTRL_CMD_GETFAMILY,
                CTRL_VERSION,
                |_| Ok(()),
            )
            .unwrap_err();
        match &e {
            Error::Kernel { family, errno, .. } => {
                assert_eq!((family.as_str(), *errno), ("nlctrl", libc::EINVAL));
            }
            e => panic!("{e}"),
        }
        assert!(e
            .to_string()
            .starts_with("nlctrl: Invalid argument (EINVAL)"));
        // A name longer than GENL_NAMSIZ fails the controller's policy, with an extended ACK.
        let e = s
            .request(
                nla::GENL_ID_CTRL,
                nla::CTRL_CMD_GETFAMILY,
                CTRL_VERSION,
                |w| w.put_str(nla::CTRL_ATTR_FAMILY_NAME, "no_such_family_x"),
            )
            .unwrap_err();
        match &e {
            Error::Kernel {
                errno,
                message: Some(m),
                ..
            } => {
                assert_eq!(*errno, libc::EINVAL);
                assert_eq!(
                    e.to_string(),
                    format!("nlctrl: Invalid argument (EINVAL): {m}")
                );
            }
            e => panic!("expected an extended ACK message: {e:?}"),
        }
        // A command nlctrl does not have.
        let e = s
            .request(nla::GENL_ID_CTRL, 0xee, CTRL_VERSION, |_| Ok(()))
            .unwrap_err();
        assert!(
            matches!(e, Error::Kernel { errno, .. } if errno == libc::EOPNOTSUPP),
            "{e}"
        );
        // An encoding failure never reaches the kernel.
        let e = s
            .request(nla::GENL_ID_CTRL, nla::CTRL_CMD_GETFAMILY, 2, |w| {
                w.put_str(nla::CTRL_ATTR_FAMILY_NAME, "a\0b")
            })
            .unwrap_err();
        assert!(matches!(e, Error::Encode(NlaError::InteriorNul)));
        assert_eq!(s.resolve_family("nlctrl").unwrap().id, 0x10);
    }

    #[test]
    fn subscribe_and_wait_for_events() {
        let Some(mut s) = socket() else { return };
        assert!(matches!(s.recv_event(), Err(Error::Protocol(_))));
        let f = s.resolve_family("nlctrl").unwrap();
        s.subscribe(f.mcast_group("notify").unwrap()).unwrap();
        s.set_recv_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        match s.recv_event() {
            // Nothing registers a family meanwhile, normally.
            Err(Error::Timeout) => {}
            Ok(m) => assert_eq!(m.nlmsg_type, nla::GENL_ID_CTRL),
            Err(e) => panic!("{e}"),
        }
        // Requests still work on a subscribed socket.
        s.set_recv_timeout(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(s.resolve_family("nlctrl").unwrap().id, 0x10);
    }

    #[test]
    fn kernel_error_display() {
        let e = Error::Kernel {
            family: drbd_genl::FAMILY_NAME.into(),
            errno: libc::EINVAL,
            message: Some("resource name missing".into()),
        };
        assert_eq!(
            e.to_string(),
            "drbd_rs: Invalid argument (EINVAL): resource name missing"
        );
        let e = Error::Kernel {
            family: "drbd_rs".into(),
            errno: libc::EEXIST,
            message: None,
        };
        assert_eq!(e.to_string(), "drbd_rs: File exists (EEXIST)");
        let e = Error::Kernel {
            family: "drbd_rs".into(),
            errno: 4095,
            message: None,
        };
        assert!(e.to_string().ends_with("(errno 4095)"), "{e}");
    }

    #[test]
    fn owned_msg_typed_getters() {
        let mut buf = [0u8; 256];
        let mut w =
            MsgWriter::new_genl(&mut buf, 0x1234, 0, 1, drbd_genl::Cmd::Reply as u8, 1).unwrap();
        w.put_str(Attr::ResourceName as u16, "r0").unwrap();
        w.put_u32(Attr::Minor as u16, 7).unwrap();
        w.put_u8(Attr::Role as u16, Role::Primary as u8).unwrap();
        w.put_u8(Attr::DiskState as u16, DiskState::UpToDate as u8)
            .unwrap();
        w.put_u8(Attr::EventType as u16, 9).unwrap();
        w.put_u64(Attr::SizeSectors as u16, 1 << 40).unwrap();
        w.put_flag(Attr::Force as u16).unwrap();
        w.put_u32(Attr::OutOfSyncKib as u16, 1).unwrap(); // wrong size on purpose
        let raw = w.finish().unwrap();
        let m = OwnedMsg::parse(&MsgIter::new(raw).next().unwrap().unwrap()).unwrap();
        assert_eq!((m.nlmsg_type, m.cmd, m.version), (0x1234, 1, 1));
        assert_eq!(m.get_str(Attr::ResourceName).unwrap(), Some("r0"));
        assert_eq!(m.get_u32(Attr::Minor).unwrap(), Some(7));
        assert_eq!(m.role().unwrap(), Some(Role::Primary));
        assert_eq!(m.disk_state().unwrap(), Some(DiskState::UpToDate));
        assert!(m.event_type().is_err());
        assert_eq!(m.get_u64(Attr::SizeSectors).unwrap(), Some(1 << 40));
        assert!(m.get_u64(Attr::OutOfSyncKib).is_err());
        assert!(m.has_flag(Attr::Force));
        assert_eq!(m.value(Attr::Force).unwrap(), Some(AttrValue::Flag));
        assert!(!m.has_flag(Attr::Message));
        assert_eq!(m.get_str(Attr::Message).unwrap(), None);
        assert!(m.get_u8(Attr::Minor).is_err());
        assert_eq!(m.value(Attr::Protocol).unwrap(), None);

        let long = "x".repeat(usize::from(drbd_genl::RESOURCE_NAME_MAX) + 1);
        let mut buf = [0u8; 256];
        let mut w = MsgWriter::new_genl(&mut buf, 0x1234, 0, 1, 1, 1).unwrap();
        w.put_str(Attr::ResourceName as u16, &long).unwrap();
        let raw = w.finish().unwrap();
        let m = OwnedMsg::parse(&MsgIter::new(raw).next().unwrap().unwrap()).unwrap();
        assert!(m.get_str(Attr::ResourceName).is_err());
    }
}
