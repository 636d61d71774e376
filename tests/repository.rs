//! The repository's promises about its own tests: CI runs exactly the test command README gives,
//! and every whole-program test file is a module of the one test binary (a file left out of
//! tests/main.rs would never run, silently).

use std::path::Path;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn ci_runs_the_test_command_readme_gives() {
    let readme = read("README.md");
    let commands: Vec<&str> = readme
        .lines()
        .filter_map(|line| line.strip_prefix("$ "))
        .filter(|line| line.contains("cargo test"))
        .map(|line| line.split("   #").next().unwrap().trim())
        .collect();
    assert!(!commands.is_empty(), "README.md gives no test command");
    let ci = read(".ci/run");
    for command in &commands {
        assert_eq!(command, &commands[0], "README.md gives two test commands");
        assert!(
            ci.lines().any(|line| line.trim() == *command),
            ".ci/run does not run README's test command `{command}`"
        );
    }
    assert!(commands[0].contains("--no-fail-fast"), "{}", commands[0]);
}

#[test]
fn every_test_file_is_a_module_of_the_test_binary() {
    let main = read("tests/main.rs");
    let declared: Vec<&str> = main
        .lines()
        .filter_map(|line| line.strip_prefix("mod "))
        .map(|rest| rest.trim_end_matches(';'))
        .collect();
    let mut files: Vec<String> = std::fs::read_dir(Path::new(ROOT).join("tests"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter_map(|name| name.strip_suffix(".rs").map(str::to_owned))
        .filter(|name| name != "main")
        .collect();
    files.sort();
    for file in &files {
        assert!(
            declared.contains(&file.as_str()),
            "tests/{file}.rs is not declared in tests/main.rs (`mod {file};`), so it never runs"
        );
    }
}
