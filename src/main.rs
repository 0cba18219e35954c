fn main() -> std::process::ExitCode {
    kdrun::cli::main()
}
