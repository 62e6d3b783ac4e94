fn main() {
    std::process::exit(sluicegate::cli::main_with_args(std::env::args_os().collect()));
}
