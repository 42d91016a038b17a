//! Running PostgreSQL's programs, as the OS user `postgres` when we are root.
//!
//! Owns the rule that `initdb` and `pg_ctl` never run as root (they refuse to): as root we go
//! through `runuser -u postgres --` (or `su postgres -s /bin/sh -c` without runuser), create
//! the `postgres` user if it is missing, and hand directories to it with `chown -R`. It also
//! owns turning a failed `Output` into a readable [`LocalPgError`]. It deliberately knows
//! nothing about clusters or servers.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use super::binaries::PgBinaries;
use super::error::{log_tail, tail, LocalPgError};

/// The OS user PostgreSQL runs as when we are root.
const PG_OS_USER: &str = "postgres";

/// Whether this process runs as root.
pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// How to run a server program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RunAs {
    /// We are not root: run it directly, as ourselves.
    Me,
    /// We are root: switch to `postgres` with `runuser`.
    Runuser,
    /// We are root and there is no `runuser`: switch with `su`.
    Su,
}

impl RunAs {
    /// Decide for this process; as root, make sure the `postgres` OS user exists.
    pub(crate) fn detect() -> Result<RunAs, LocalPgError> {
        if !is_root() {
            return Ok(RunAs::Me);
        }
        ensure_postgres_user()?;
        let has_runuser = ["/usr/sbin/runuser", "/sbin/runuser", "/usr/bin/runuser"]
            .iter()
            .any(|p| Path::new(p).is_file());
        Ok(if has_runuser {
            RunAs::Runuser
        } else {
            RunAs::Su
        })
    }

    /// A `Command` running `program args` as the server's OS user, from `/` (the caller's
    /// working directory may not be readable by `postgres`).
    pub(crate) fn command(&self, program: &Path, args: &[String]) -> Command {
        let mut cmd = match self {
            RunAs::Me => {
                let mut cmd = Command::new(program);
                cmd.args(args);
                cmd
            }
            RunAs::Runuser => {
                let mut cmd = Command::new("runuser");
                cmd.args(["-u", PG_OS_USER, "--"]).arg(program).args(args);
                cmd
            }
            RunAs::Su => {
                let mut cmd = Command::new("su");
                cmd.args([PG_OS_USER, "-s", "/bin/sh", "-c"])
                    .arg(shell_line(&program.to_string_lossy(), args));
                cmd
            }
        };
        cmd.current_dir("/").stdin(Stdio::null());
        cmd
    }

    /// The same as [`RunAs::command`], as one line for `sh` (used by the watchdog).
    pub(crate) fn shell_command(&self, program: &Path, args: &[String]) -> String {
        let inner = shell_line(&program.to_string_lossy(), args);
        match self {
            RunAs::Me => inner,
            RunAs::Runuser => format!("runuser -u {PG_OS_USER} -- {inner}"),
            RunAs::Su => format!("su {PG_OS_USER} -s /bin/sh -c {}", shell_quote(&inner)),
        }
    }

    /// Give `path` (recursively) to the server's OS user; nothing to do when not root.
    pub(crate) fn chown(&self, path: &Path) -> Result<(), LocalPgError> {
        if *self == RunAs::Me {
            return Ok(());
        }
        let mut cmd = Command::new("chown");
        cmd.arg("-R")
            .arg(format!("{PG_OS_USER}:"))
            .arg(path)
            .stdin(Stdio::null());
        run(
            cmd,
            format!("chown -R {PG_OS_USER}: {}", path.display()),
            None,
        )
        .map(|_| ())
    }
}

/// The programs and the user to run them as: everything a server handle needs to act.
#[derive(Debug, Clone)]
pub(crate) struct Tools {
    pub(crate) bins: PgBinaries,
    pub(crate) run_as: RunAs,
}

impl Tools {
    /// Run the server program `name` (from the bindir) as the server's OS user.
    pub(crate) fn run_pg(
        &self,
        name: &str,
        args: &[String],
        log_file: Option<&Path>,
    ) -> Result<Output, LocalPgError> {
        let program = self.bins.bin(name);
        let cmd = self.run_as.command(&program, args);
        run(cmd, display_line(name, args), log_file)
    }

    /// Path of a client program: the bindir's copy, else whatever `PATH` finds.
    pub(crate) fn client_bin(&self, name: &str) -> PathBuf {
        let path = self.bins.bin(name);
        if path.is_file() {
            path
        } else {
            PathBuf::from(name)
        }
    }
}

/// Run `cmd` to completion; a non-zero exit becomes [`LocalPgError::Command`].
pub(crate) fn run(
    cmd: Command,
    display: String,
    log_file: Option<&Path>,
) -> Result<Output, LocalPgError> {
    run_with_stdin(cmd, display, None, log_file)
}

/// Like [`run`], writing `stdin` to the program first (psql reads its SQL that way).
pub(crate) fn run_with_stdin(
    mut cmd: Command,
    display: String,
    stdin: Option<&str>,
    log_file: Option<&Path>,
) -> Result<Output, LocalPgError> {
    let spawn_error = |display: &str, e: std::io::Error| LocalPgError::Command {
        command: display.to_string(),
        status: format!("could not run it: {e}"),
        stderr_tail: String::new(),
        log_file: log_file.map(Path::to_path_buf),
        log_tail: String::new(),
    };
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    if stdin.is_some() {
        cmd.stdin(Stdio::piped());
    }
    let mut child = cmd.spawn().map_err(|e| spawn_error(&display, e))?;
    // Feed stdin from another thread: writing it all first could deadlock against a program
    // that fills its stdout pipe before reading the rest of its input.
    let feeder = match (stdin, child.stdin.take()) {
        (Some(text), Some(mut pipe)) => {
            let text = text.to_string();
            // A write error means the program exited early; its status and stderr say why,
            // so the error is reported from the exit status below rather than here.
            Some(std::thread::spawn(move || {
                let _ = pipe.write_all(text.as_bytes());
            }))
        }
        _ => None,
    };
    let out = child
        .wait_with_output()
        .map_err(|e| spawn_error(&display, e))?;
    if let Some(feeder) = feeder {
        // The thread only writes to a pipe; a panic there is not possible in practice and
        // would change nothing about the result we already have.
        let _ = feeder.join();
    }
    if out.status.success() {
        return Ok(out);
    }
    Err(LocalPgError::Command {
        command: display,
        status: out.status.to_string(),
        stderr_tail: tail(&String::from_utf8_lossy(&out.stderr)),
        log_file: log_file.map(Path::to_path_buf),
        log_tail: log_file.map(log_tail).unwrap_or_default(),
    })
}

/// A short, readable command line for error messages.
pub(crate) fn display_line(name: &str, args: &[String]) -> String {
    std::iter::once(name.to_string())
        .chain(args.iter().cloned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// `program 'arg 1' arg2`, quoted for `sh`.
pub(crate) fn shell_line(program: &str, args: &[String]) -> String {
    std::iter::once(program)
        .chain(args.iter().map(String::as_str))
        .map(shell_quote)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Quote one word for `sh` (single quotes; embedded `'` becomes `'\''`).
pub(crate) fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-=:@%+,".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

fn postgres_user_exists() -> bool {
    Command::new("id")
        .arg("-u")
        .arg(PG_OS_USER)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Create the `postgres` OS user when it is missing (a fresh CI machine may lack it).
fn ensure_postgres_user() -> Result<(), LocalPgError> {
    if postgres_user_exists() {
        return Ok(());
    }
    let out = Command::new("useradd")
        .args(["--system", "--no-create-home", "--user-group", PG_OS_USER])
        .stdin(Stdio::null())
        .output();
    // Another process may have created it meanwhile, so success is judged by the user
    // existing afterwards, not by useradd's status.
    if postgres_user_exists() {
        return Ok(());
    }
    let why = match out {
        Ok(out) => format!(
            "`useradd --system --no-create-home --user-group {PG_OS_USER}` failed ({}): {}",
            out.status,
            tail(&String::from_utf8_lossy(&out.stderr)).trim()
        ),
        Err(e) => format!("the user does not exist and useradd could not run: {e}"),
    };
    Err(LocalPgError::PostgresUser(why))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting() {
        assert_eq!(shell_quote("/tmp/sg-1/s0"), "/tmp/sg-1/s0");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(
            shell_line("pg_ctl", &["stop".into(), "-D".into(), "/x y".into()]),
            "pg_ctl stop -D '/x y'"
        );
    }

    /// As root, both ways of switching users must really run the program as `postgres`.
    #[test]
    fn switching_user_works_when_root() {
        if !is_root() {
            return;
        }
        RunAs::detect().expect("the postgres OS user exists or can be created");
        for run_as in [RunAs::Runuser, RunAs::Su] {
            let cmd = run_as.command(Path::new("/usr/bin/id"), &["-un".into()]);
            let out = run(cmd, "id -un".into(), None).expect("id runs");
            assert_eq!(
                String::from_utf8_lossy(&out.stdout).trim(),
                "postgres",
                "{run_as:?}"
            );
        }
    }

    #[test]
    fn runuser_line_switches_user() {
        let line = RunAs::Runuser.shell_command(Path::new("/bin/pg_ctl"), &["status".into()]);
        assert_eq!(line, "runuser -u postgres -- /bin/pg_ctl status");
        let line = RunAs::Su.shell_command(Path::new("/bin/pg_ctl"), &["a b".into()]);
        assert_eq!(line, r"su postgres -s /bin/sh -c '/bin/pg_ctl '\''a b'\'''");
    }
}
