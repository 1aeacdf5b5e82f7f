//! `petrel-admin` built inside the test package, so its tests always run the current code.

fn main() -> std::process::ExitCode {
    petrel_bench::admin_cli::main()
}
