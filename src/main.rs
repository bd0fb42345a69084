use std::process::ExitCode;

fn main() -> ExitCode {
    reconciler::cli::main()
}
