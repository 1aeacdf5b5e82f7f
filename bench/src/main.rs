//! `petrel-bench`: the bundled load generator; see `petrel_bench::load`.

fn main() -> std::process::ExitCode {
    petrel_bench::load::main()
}
