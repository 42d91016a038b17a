//! The watchdog: a detached `sh` that cleans up a cluster when its creator dies.
//!
//! Owns cleanup after a creator that never ran `Drop`: a test binary whose cluster lives in a
//! `static`, one that panicked, aborted, or was killed with SIGKILL. The script polls the
//! creator's pid once a second (`kill -0`); when it is gone, and the root still carries this
//! cluster's owner token (so a newer cluster that reused the same root is left alone), it
//! stops every server with `pg_ctl stop -m immediate` and removes the root. It deliberately
//! does nothing while the creator lives: a normal `Drop` cleans up and then ends the watchdog.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use std::os::unix::process::CommandExt;

use super::error::LocalPgError;
use super::exec::{shell_quote, RunAs};
use super::server::{path_arg, PG_CTL_WAIT_SECS};

/// The running watchdog; ending it (on the cluster's `Drop`) cancels the cleanup.
#[derive(Debug)]
pub(crate) struct Watchdog {
    child: Child,
}

/// What the watchdog needs to know, fixed when the cluster starts.
pub(crate) struct Plan<'a> {
    pub(crate) creator_pid: u32,
    pub(crate) root: &'a Path,
    pub(crate) owner_file: &'a Path,
    pub(crate) token: &'a str,
    pub(crate) data_dirs: Vec<&'a Path>,
    pub(crate) pg_ctl: &'a Path,
    pub(crate) run_as: &'a RunAs,
    /// Stop the servers but leave the files (for looking at logs after a failure).
    pub(crate) keep: bool,
}

impl Watchdog {
    pub(crate) fn spawn(plan: &Plan<'_>) -> Result<Watchdog, LocalPgError> {
        let script = script(plan);
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(&script)
            // stdio must not be inherited: `cargo test` waits for EOF on the pipes it gives
            // the test binary, and would wait for the watchdog too.
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .current_dir("/")
            // Its own process group: Ctrl-C in a terminal signals the foreground group, and
            // the watchdog must outlive the test it cleans up after.
            .process_group(0);
        let child = cmd.spawn().map_err(|e| LocalPgError::Command {
            command: "sh -c <watchdog script>".into(),
            status: format!("could not run it: {e}"),
            stderr_tail: String::new(),
            log_file: None,
            log_tail: String::new(),
        })?;
        Ok(Watchdog { child })
    }

    /// End the watchdog without letting it clean up (the caller has done so).
    pub(crate) fn cancel(mut self) {
        // It may already have exited; either way there is nothing left to do.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn script(plan: &Plan<'_>) -> String {
    let mut lines = vec![
        format!(
            "while kill -0 {} 2>/dev/null; do sleep 1; done",
            plan.creator_pid
        ),
        format!(
            "[ \"$(cat {} 2>/dev/null)\" = {} ] || exit 0",
            shell_quote(&path_arg(plan.owner_file)),
            shell_quote(plan.token)
        ),
    ];
    for dir in &plan.data_dirs {
        let args = [
            "stop",
            "-D",
            &path_arg(dir),
            "-m",
            "immediate",
            "-w",
            "-t",
            &PG_CTL_WAIT_SECS.to_string(),
        ]
        .map(str::to_string);
        lines.push(format!(
            "{} >/dev/null 2>&1",
            plan.run_as.shell_command(plan.pg_ctl, &args)
        ));
    }
    if !plan.keep {
        lines.push(format!("rm -rf {}", shell_quote(&path_arg(plan.root))));
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_waits_checks_token_stops_and_removes() {
        let plan = Plan {
            creator_pid: 42,
            root: Path::new("/tmp/sg-1"),
            owner_file: Path::new("/tmp/sg-1/.localpg-owner"),
            token: "42-7",
            data_dirs: vec![Path::new("/tmp/sg-1/s0"), Path::new("/tmp/sg-1/s1")],
            pg_ctl: Path::new("/pg/bin/pg_ctl"),
            run_as: &RunAs::Runuser,
            keep: false,
        };
        let s = script(&plan);
        assert!(s.starts_with("while kill -0 42 2>/dev/null; do sleep 1; done\n"));
        assert!(s.contains("[ \"$(cat /tmp/sg-1/.localpg-owner 2>/dev/null)\" = 42-7 ] || exit 0"));
        assert!(s.contains(
            "runuser -u postgres -- /pg/bin/pg_ctl stop -D /tmp/sg-1/s1 -m immediate -w -t 60"
        ));
        assert!(s.ends_with("rm -rf /tmp/sg-1"));
        let kept = script(&Plan { keep: true, ..plan });
        assert!(!kept.contains("rm -rf"));
    }
}
