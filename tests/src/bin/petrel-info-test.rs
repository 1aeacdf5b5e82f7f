//! `petrel-info` built inside the test package, so its tests always run the current code.

fn main() -> std::process::ExitCode {
    petrel_bench::info_cli::main()
}
