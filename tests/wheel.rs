//! The Python wheel, end to end: scripts/test-wheel.sh installs maturin from the package registry
//! into a throwaway virtual environment, builds the wheel the way `pip install .` does, installs it
//! into a second fresh environment and runs the helper from there. This test then checks what
//! that run left behind: the wheel's name, the binary's linking, and the token's signature and
//! claims, verified with ring against the public key the installed `keygen` printed.
//!
//! Needs python3 with venv and pip, and the network to the package registry (for maturin).

use crate::support;
use crate::support::dist;

use support::cli::User;
use support::home::run;
use support::jwt::{TestKey, now, verify};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/test-wheel.sh");

#[test]
fn the_wheel_installs_the_helper_on_path_and_it_signs() {
    let user = User::new();
    let work = user.path().join("wheel");
    let mut command = user.command("bash");
    command.arg(SCRIPT).arg(&work);
    dist::toolchain_env(&mut command);
    let result = run(command, "");
    assert_eq!(result.code, Some(0), "{result:?}");
    let read = |name: &str| std::fs::read_to_string(work.join(name)).unwrap();

    // Named for this version, for any Python 3, with a platform tag (a binary, not pure Python).
    let version = env!("CARGO_PKG_VERSION");
    let wheels: Vec<String> = std::fs::read_dir(work.join("wheels"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    let [wheel] = &wheels[..] else {
        panic!("one wheel expected: {wheels:?}");
    };
    assert!(
        wheel.starts_with(&format!("git_credential_codestorage-{version}-py3-none-"))
            && !wheel.ends_with("-any.whl"),
        "{wheel}"
    );

    let bin = work.join("user-venv/bin");
    let installed = bin.join("git-credential-codestorage");
    assert_eq!(read("which.txt").trim(), installed.to_str().unwrap());
    assert_eq!(
        read("version.txt"),
        format!("git-credential-codestorage {version}\n")
    );
    if dist::host_triple().contains("-linux-") {
        dist::assert_static(&installed);
        dist::assert_hot_text_first(&installed);
        assert!(wheel.contains("linux"), "{wheel}");
    }

    let public = TestKey::from_pems(String::new(), read("acme.pub.pem"), "ES256");
    let get = read("get.txt");
    let password = get
        .lines()
        .find_map(|line| line.strip_prefix("password="))
        .unwrap_or_else(|| panic!("no password in {get:?}"));
    assert!(get.lines().any(|line| line == "username=t"), "{get}");
    let verified = verify(password, &public);
    let claims = &verified.claims;
    assert_eq!(
        verified.claim_order,
        ["iss", "sub", "repo", "scopes", "iat", "exp"]
    );
    assert_eq!(claims["iss"], "acme");
    assert_eq!(claims["sub"], "wheel-test");
    assert_eq!(claims["repo"], "team/wheel");
    assert_eq!(
        claims["scopes"],
        serde_json::json!(["git:read", "git:write"])
    );
    let iat = claims["iat"].as_i64().unwrap();
    assert!((iat - now()).abs() < 300, "iat {iat}");
    assert_eq!(claims["exp"].as_i64().unwrap() - iat, 3600);

    // Nothing of the key or the token reached the script's output.
    let key = std::fs::read_to_string(work.join("acme.pem")).unwrap();
    let secret_line = key.lines().nth(1).unwrap();
    for output in [&result.stdout, &result.stderr] {
        assert!(!output.contains(password) && !output.contains(secret_line));
    }
}
