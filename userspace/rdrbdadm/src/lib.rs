// SPDX-License-Identifier: GPL-2.0

//! The parts of `rdrbdadm` that other crates use: the drbd.conf parser, which the fuzz
//! targets (`hark-fuzz-targets`) drive and replay.

pub mod conf;
