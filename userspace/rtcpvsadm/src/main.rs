// SPDX-License-Identifier: GPL-2.0

//! `rtcpvsadm`: administration of `ktcpvs_rs` virtual services through configfs.
//!
//! Only what exists is offered: today that is a check that the configfs tree is present.
//! Services, servers and rules arrive with the ktcpvs_rs data path.

use clap::{Parser, Subcommand};
use hark_proto::ktcpvs_cfs;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "rtcpvsadm",
    version,
    about = "Administer hark's ktcpvs_rs layer-7 switch"
)]
struct Cli {
    /// Where configfs is mounted.
    #[arg(long, default_value = ktcpvs_cfs::CONFIGFS_MOUNT)]
    configfs: PathBuf,
    #[command(subcommand)]
    cmd: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Report whether the ktcpvs configfs tree is present (exit 0 if it is, 3 if not).
    Probe,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Command::Probe => {
            let dir = cli
                .configfs
                .join(ktcpvs_cfs::SUBSYS.to_str().expect("ASCII name"));
            if dir.is_dir() {
                println!("ktcpvs: {} present", dir.display());
                ExitCode::SUCCESS
            } else {
                println!(
                    "ktcpvs: {} missing (mount configfs and insmod ktcpvs_rs.ko)",
                    dir.display()
                );
                ExitCode::from(3)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
