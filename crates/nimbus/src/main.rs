//! The `nimbus` binary: see the `nimbus` library for the commands.

use std::process::ExitCode;

fn main() -> ExitCode {
    nimbus::main()
}
