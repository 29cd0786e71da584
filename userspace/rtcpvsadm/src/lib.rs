// SPDX-License-Identifier: GPL-2.0

//! The parts of `rtcpvsadm` that other crates use: the configuration model and its file
//! grammar, which the fuzz targets (`hark-fuzz-targets`) drive and replay.

pub mod conf;
