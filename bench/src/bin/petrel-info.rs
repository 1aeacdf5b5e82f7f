//! `petrel-info`, the info-protocol CLI; see `petrel_bench::info_cli`.

fn main() -> std::process::ExitCode {
    petrel_bench::info_cli::main()
}
