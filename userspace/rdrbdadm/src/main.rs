// SPDX-License-Identifier: GPL-2.0

//! `rdrbdadm`: administration of `drbd_rs` devices over the `drbd_rs` generic netlink family.
//!
//! Only what exists is offered: today that is the description of the family's numbering and a
//! check that the module is loaded. Resource management arrives with the drbd_rs core.

use clap::{Parser, Subcommand};
use hark_proto::drbd_genl;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "rdrbdadm",
    version,
    about = "Administer hark's drbd_rs replicated block devices"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the generic netlink family name, version and command numbers.
    Family,
    /// Report whether the drbd_rs module is loaded (exit 0 if it is, 3 if not).
    Probe,
}

fn module_loaded(proc_modules: &str, name: &str) -> bool {
    proc_modules
        .lines()
        .any(|l| l.split_whitespace().next() == Some(name))
}

fn main() -> ExitCode {
    match Cli::parse().cmd {
        Command::Family => {
            println!(
                "family {} version {} mcast-group {}",
                drbd_genl::FAMILY_NAME,
                drbd_genl::FAMILY_VERSION,
                drbd_genl::MCGRP_EVENTS
            );
            for c in drbd_genl::Cmd::ALL {
                println!("  {:3} {}", c as u8, c.name());
            }
            ExitCode::SUCCESS
        }
        Command::Probe => match std::fs::read_to_string("/proc/modules") {
            Ok(m) if module_loaded(&m, "drbd_rs") => {
                println!("drbd_rs: loaded");
                ExitCode::SUCCESS
            }
            Ok(_) => {
                println!("drbd_rs: not loaded (insmod drbd_rs.ko first)");
                ExitCode::from(3)
            }
            Err(e) => {
                eprintln!("rdrbdadm: cannot read /proc/modules: {e}");
                ExitCode::from(20)
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_module_by_exact_name() {
        let m = "drbd 1 0 - Live 0x0\ndrbd_rs 16384 0 - Live 0x0\n";
        assert!(module_loaded(m, "drbd_rs"));
        assert!(!module_loaded("drbd 1 0 - Live 0x0\n", "drbd_rs"));
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
