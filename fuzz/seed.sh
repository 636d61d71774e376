#!/bin/sh
# Seeds fuzz/corpus/TARGET with valid inputs, so the fuzzers start from what the helper really
# reads (libFuzzer then mutates them) instead of from nothing. Safe to run again; the corpus is
# not committed. Usage: sh fuzz/seed.sh   (from the repository root or from fuzz/)
set -eu
cd "$(dirname "$0")/.."
corpus=fuzz/corpus
mkdir -p "$corpus/request_parser" "$corpus/request_handler" "$corpus/config_parser" \
    "$corpus/key_loader" "$corpus/token_decoder"

# Requests as git 2.47 sends them, and one for each kind of host the helper serves.
i=0
for request in \
    'capability[]=authtype\ncapability[]=state\nprotocol=https\nhost=acme.code.storage\npath=team/x.git\nwwwauth[]=Basic realm="Code Storage"\n\n' \
    'protocol=https\nhost=git.acme.dev:8443\npath=mirrors/a+ephemeral.git\n\n' \
    'protocol=http\nhost=localhost:8080\npath=x.git\n\n' \
    'protocol=https\nhost=beta.code.storage\npath=a/b/c.git\nusername=t\npassword=x.y.z\n\n'; do
    i=$((i + 1))
    printf "$request" > "$corpus/request_parser/seed-$i"
    printf "$request" > "$corpus/request_handler/seed-$i"
done

# Key files as they are (the loader's PEM path), and the DER inside each single-block one behind
# the selector byte key_loader reads (0 PRIVATE KEY, 1 EC PRIVATE KEY, 2 RSA PRIVATE KEY,
# 4 PUBLIC KEY).
for pem in tests/fixtures/*.pem; do
    name=$(basename "$pem" .pem)
    cp "$pem" "$corpus/key_loader/pem-$name"
    [ "$(grep -c -- '-----BEGIN' "$pem")" = 1 ] || continue
    case "$(head -n 1 "$pem")" in
        '-----BEGIN PRIVATE KEY-----') selector='\000' ;;
        '-----BEGIN EC PRIVATE KEY-----') selector='\001' ;;
        '-----BEGIN RSA PRIVATE KEY-----') selector='\002' ;;
        '-----BEGIN PUBLIC KEY-----') selector='\004' ;;
        *) continue ;;
    esac
    { printf "$selector"; sed '1d;$d' "$pem" | base64 -d; } > "$corpus/key_loader/der-$name"
done

# The configuration examples of docs/configuration.md.
awk '/^```toml/ { n++; keep = 1; next } /^```/ { keep = 0 } keep { print > ("'"$corpus"'/config_parser/docs-" n) }' \
    docs/configuration.md

# A token, a Bearer header and an SDK-style remote URL (signature bytes are not checked).
token='eyJhbGciOiJFUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJhY21lIiwic3ViIjoiY2kiLCJyZXBvIjoidGVhbS94Iiwic2NvcGVzIjpbImdpdDpyZWFkIl0sImlhdCI6MTgwMDAwMDAwMCwiZXhwIjoxODAwMDAzNjAwfQ.c2ln'
printf '%s' "$token" > "$corpus/token_decoder/token"
printf 'Bearer %s\n' "$token" > "$corpus/token_decoder/bearer"
printf 'https://t:%s@acme.code.storage/team/x.git\n' "$token" > "$corpus/token_decoder/url"

echo "seeded $(find "$corpus" -name 'seed-*' -o -name 'pem-*' -o -name 'der-*' -o -name 'docs-*' -o -name 'token' -o -name 'bearer' -o -name 'url' | wc -l) inputs under $corpus"
