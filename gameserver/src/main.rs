fn main() -> std::process::ExitCode {
    gameserver::cli::main()
}
