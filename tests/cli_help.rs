//! Every subcommand's `--help` is complete: it runs (exit 0), describes every argument, and
//! ends with an example of that very subcommand (SPEC section 2; issue 9).
//!
//! The subcommand tree comes from the clap definition (`shardgate::cli::command()`), so a new
//! subcommand is covered without touching this file; the help text itself is taken from the
//! real binary, as a user sees it.

use std::process::Command;

/// Every subcommand path (`["serve"]`, `["twopc", "list"]`, ...), groups included.
fn paths(cmd: &clap::Command, prefix: &[String], out: &mut Vec<Vec<String>>) {
    for sub in cmd.get_subcommands() {
        let mut path = prefix.to_vec();
        path.push(sub.get_name().to_string());
        out.push(path.clone());
        paths(sub, &path, out);
    }
}

fn find<'a>(root: &'a clap::Command, path: &[String]) -> &'a clap::Command {
    path.iter().fold(root, |cmd, name| {
        cmd.find_subcommand(name)
            .unwrap_or_else(|| panic!("no subcommand {name}"))
    })
}

#[test]
fn every_subcommand_help_runs_and_has_an_example() {
    let root = shardgate::cli::command();
    let mut all = Vec::new();
    paths(&root, &[], &mut all);
    let names: Vec<String> = all.iter().map(|p| p.join(" ")).collect();
    for expected in [
        "serve",
        "check",
        "explain",
        "demo",
        "twopc list",
        "directory get",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing: {names:?}"
        );
    }
    for path in &all {
        let shown = path.join(" ");
        let out = Command::new(env!("CARGO_BIN_EXE_shardgate"))
            .args(path)
            .arg("--help")
            .output()
            .expect("run shardgate --help");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "shardgate {shown} --help: {out:?}");
        assert!(
            text.contains(&format!("Usage: shardgate {shown}")),
            "shardgate {shown} --help has no usage line:\n{text}"
        );
        // The example section: a line "Example:", "Examples:" or "Example (planned):", then
        // at least one indented line running this subcommand.
        let after = text
            .lines()
            .skip_while(|l| !l.starts_with("Example"))
            .skip(1)
            .collect::<Vec<_>>();
        assert!(
            after
                .iter()
                .any(|l| l.starts_with("  ") && l.contains(&format!("shardgate {shown}"))),
            "shardgate {shown} --help has no example of itself:\n{text}"
        );
        // Every argument and option says what it is for (help and version are clap's own).
        let cmd = find(&root, path);
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            if id == "help" || id == "version" {
                continue;
            }
            assert!(
                arg.get_help().is_some() || arg.get_long_help().is_some(),
                "shardgate {shown}: argument `{id}` has no description"
            );
        }
        // And the command itself has a one-line summary.
        assert!(
            cmd.get_about().is_some(),
            "shardgate {shown} has no summary"
        );
    }
}

#[test]
fn top_level_help_lists_every_subcommand_and_usage_errors_exit_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_shardgate"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for sub in shardgate::cli::command().get_subcommands() {
        assert!(text.contains(&format!("  {}", sub.get_name())), "{text}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_shardgate"))
        .args(["serve", "--no-such-option"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}
