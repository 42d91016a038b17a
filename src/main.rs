//! The `shardgate` binary: parse the command line and dispatch to `cli`; nothing else.

fn main() -> std::process::ExitCode {
    shardgate::cli::main()
}
