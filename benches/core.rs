//! The pure core of `get`, one piece at a time: request parsing, settings resolution, and
//! signing with each key type. `cargo bench --bench core`.

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use git_credential_codestorage::env::MapEnv;
use git_credential_codestorage::key::{self, KeySource, NewKey};
use git_credential_codestorage::resolve::{self, Overrides, Reach, Target};
use git_credential_codestorage::signer::local::LocalSigner;
use git_credential_codestorage::token::{self, Claims, Scope};
use git_credential_codestorage::{config, protocol};

const REQUEST: &[u8] = b"capability[]=authtype\ncapability[]=state\nprotocol=https\nhost=acme.code.storage\npath=team/project-alpha.git\nwwwauth[]=Basic realm=\"Code Storage\"\n\n";

const CONFIG: &str = r#"
ttl = "1h"
subject = "ci@runner"

[org.acme]
key_file = "acme.pem"
hosts = ["acme.code.storage", "git.acme.dev:8443"]

[[org.acme.repo]]
match = "mirrors/*"
scopes = ["git:read"]
ttl = "5m"

[[org.acme.repo]]
match = "agents/**"
ops = ["no-force-push"]
refs = [{ pattern = "refs/heads/main", ops = ["no-push"] }]

[org.beta]
key_env = "BETA_KEY"
"#;

fn parsing(c: &mut Criterion) {
    c.bench_function("parse request", |b| {
        b.iter(|| protocol::parse(black_box(REQUEST)).unwrap())
    });
    c.bench_function("parse config", |b| {
        b.iter(|| config::parse(black_box(CONFIG), Path::new("/c/config.toml")).unwrap())
    });
}

fn resolution(c: &mut Criterion) {
    let config = config::parse(CONFIG, Path::new("/c/config.toml")).unwrap();
    let env = MapEnv::from([("USER", "bench")]);
    c.bench_function("resolve settings", |b| {
        b.iter(|| {
            let target = Target::Request {
                protocol: "https",
                host: black_box("acme.code.storage"),
                path: Some(black_box("agents/a/b.git")),
            };
            resolve::resolve(
                Ok(Some(&config)),
                target,
                Reach::Repository,
                &env,
                &Overrides::default(),
            )
            .unwrap()
        })
    });
}

fn signing(c: &mut Criterion) {
    let fixture = |name: &str| {
        std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures")
                .join(name),
        )
        .unwrap()
    };
    let keys = [
        (
            "ES256",
            key::generate(NewKey::P256)
                .unwrap()
                .expose()
                .as_bytes()
                .to_vec(),
        ),
        (
            "EdDSA",
            key::generate(NewKey::Ed25519)
                .unwrap()
                .expose()
                .as_bytes()
                .to_vec(),
        ),
        ("RS256-2048", fixture("rsa2048.pkcs8.pem")),
        ("RS256-4096", fixture("rsa4096.pkcs8.pem")),
    ];
    let claims = Claims {
        iss: "acme".into(),
        sub: "ci@runner".into(),
        repo: "team/project-alpha".into(),
        scopes: vec![Scope::GitRead, Scope::GitWrite],
        iat: 1_800_000_000,
        exp: 1_800_003_600,
        refs: None,
        ops: None,
    };
    let source = KeySource::Env("BENCH".into());
    for (name, pem) in keys {
        let key = LocalSigner::new(key::parse_pem(&pem, &source).unwrap(), &source).unwrap();
        c.bench_function(&format!("sign {name}"), |b| {
            b.iter(|| token::sign(black_box(&claims), &key).unwrap())
        });
        c.bench_function(&format!("load PEM and sign {name}"), |b| {
            b.iter(|| {
                let key = key::parse_pem(black_box(&pem), &source).unwrap();
                let key = LocalSigner::new(key, &source).unwrap();
                token::sign(&claims, &key).unwrap()
            })
        });
    }
}

criterion_group!(benches, parsing, resolution, signing);
criterion_main!(benches);
