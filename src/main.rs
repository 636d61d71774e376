//! `git-credential-codestorage`: run by git as `credential.helper = codestorage`.

fn main() -> std::process::ExitCode {
    git_credential_codestorage::cli::run()
}
