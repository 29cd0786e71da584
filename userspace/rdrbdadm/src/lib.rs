// SPDX-License-Identifier: GPL-2.0

//! The parts of `rdrbdadm` that other crates use: the drbd.conf parser and the generic
//! netlink client (whose message and attribute decoding the fuzz targets of
//! `hark-fuzz-targets` drive and replay).

pub mod conf;
pub mod genl;
