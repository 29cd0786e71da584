// SPDX-License-Identifier: GPL-2.0

//! Checks a CLI's man page (`Documentation/man/*.8`, roff) against its clap command tree, so
//! that the pages cannot silently go stale. Compiled into the unit tests of `rdrbdadm` and
//! `rtcpvsadm` (`#[path = "../../man_check.rs"] mod man_check;`).

use clap::Command;

/// `roff` with the escapes that matter for matching removed: `\-` becomes `-`, font changes
/// and macro argument quotes go.
fn plain(roff: &str) -> String {
    ["\\fB", "\\fI", "\\fR", "\\fP"]
        .iter()
        .fold(roff.replace("\\-", "-"), |t, f| t.replace(f, ""))
        .replace('"', " ")
}

/// Whether `word` occurs in `text` not as part of a longer word or option name.
fn has_word(text: &str, word: &str) -> bool {
    let part = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || "-_".contains(c));
    text.match_indices(word).any(|(i, _)| {
        !part(text[..i].chars().next_back()) && !part(text[i + word.len()..].chars().next())
    })
}

/// The names that head the entries (`.TP`, then a line starting with the name) of the page's
/// COMMANDS section, leaving out option entries (`--name`).
fn command_entries(text: &str) -> Vec<String> {
    let mut entries = Vec::new();
    let (mut in_commands, mut after_tp) = (false, false);
    for line in text.lines() {
        if let Some(title) = line.strip_prefix(".SH ") {
            in_commands = title.trim() == "COMMANDS";
            after_tp = false;
            continue;
        }
        if in_commands && after_tp {
            let mut words = line.split_whitespace();
            let first = words.next();
            let name = match first {
                Some(m) if m.starts_with('.') => words.next(),
                _ => first,
            };
            if let Some(n) = name.filter(|n| !n.starts_with('-')) {
                entries.push(n.to_string());
            }
        }
        after_tp = line.trim() == ".TP";
    }
    entries
}

/// What is wrong with `roff` as the man page of `cmd`: a subcommand without an entry in
/// COMMANDS, an entry naming no subcommand, or an option (long or short, of the command or of
/// a subcommand) that the page never mentions. Empty when the page is complete.
pub fn check(cmd: &Command, roff: &str) -> Vec<String> {
    let text = plain(roff);
    let entries = command_entries(&text);
    let subs: Vec<&str> = cmd
        .get_subcommands()
        .map(Command::get_name)
        .filter(|n| *n != "help")
        .collect();
    let mut problems = Vec::new();
    for s in &subs {
        if !entries.iter().any(|e| e == s) {
            problems.push(format!("command '{s}' has no entry in COMMANDS"));
        }
    }
    for e in &entries {
        if !subs.contains(&e.as_str()) {
            problems.push(format!("COMMANDS has an entry '{e}', which is no command"));
        }
    }
    for c in std::iter::once(cmd).chain(cmd.get_subcommands()) {
        for a in c.get_arguments() {
            let long = a.get_long().map(|l| format!("--{l}"));
            let short = a.get_short().map(|s| format!("-{s}"));
            for flag in long.into_iter().chain(short) {
                if !has_word(&text, &flag) {
                    problems.push(format!("{}: option {flag} is not mentioned", c.get_name()));
                }
            }
        }
    }
    problems
}
