//! A CI fan-out: 200 `get`s at once, each a separate process, all succeed with distinct tokens
//! that verify. Correctness only; speed is measured in benches/, never here.

use crate::support;

use std::collections::HashSet;

use support::home::Home;
use support::jwt::{TestKey, verify};

#[test]
fn two_hundred_concurrent_gets_all_return_distinct_valid_tokens() {
    let key = TestKey::p256();
    let home = Home::new();
    home.write_key("acme.pem", &key.pem);
    home.write_config("[org.acme]\nkey_file = \"acme.pem\"\n");
    let tokens: Vec<(usize, String)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..200)
            .map(|i| {
                let home = &home;
                scope.spawn(move || {
                    let request =
                        format!("protocol=https\nhost=acme.code.storage\npath=fan/out-{i}.git\n\n");
                    let run = home.get(request, &[]);
                    assert_eq!(run.code, Some(0), "get {i}: {}", run.stderr);
                    (i, run.password().to_owned())
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let distinct: HashSet<&str> = tokens.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(distinct.len(), 200);
    for (i, token) in &tokens {
        let claims = verify(token, &key).claims;
        assert_eq!(claims["repo"], format!("fan/out-{i}"));
    }
}
