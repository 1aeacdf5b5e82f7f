//! `petrel-admin`, the asadm-like cluster view; see `petrel_bench::admin_cli`.

fn main() -> std::process::ExitCode {
    petrel_bench::admin_cli::main()
}
