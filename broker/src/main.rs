fn main() -> std::process::ExitCode {
    hpfriends_broker::cli::main()
}
