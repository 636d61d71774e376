//! Git LFS, as Code Storage serves it on every repository with the same tokens as git: the
//! batch API (`info/lfs/objects/batch`), the basic transfer (GET and PUT of
//! `info/lfs/objects/OID`), and no locking (`info/lfs/locks...` answer 404, which the LFS spec
//! lets a server without locking answer and git-lfs takes as "locking not supported").
//! Downloads need `git:read` (or `git:write`), uploads and lock checks `git:write`.

use std::fs::File;
use std::io::{self, BufRead, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::http;

/// The media type of every LFS API request and answer.
pub const MEDIA_TYPE: &str = "application/vnd.git-lfs+json";

/// The largest batch request read, in bytes.
const MAX_BATCH: u64 = 1024 * 1024;

/// What an LFS request asks for, before its token is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// `POST objects/batch`: which objects to move and where.
    Batch,
    /// `GET objects/OID`.
    Download(String),
    /// `PUT objects/OID`.
    Upload(String),
    /// Anything under `locks`: not supported.
    Locks,
}

/// An LFS request for a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The path as sent, up to and including `.git` (for the links the batch answer gives).
    pub prefix: String,
    /// What is asked.
    pub kind: Kind,
}

/// Whether `path` (as sent, not decoded) is an LFS request; `Err` for a bad one.
pub fn route(method: &str, path: &str) -> Option<Result<Request, (u16, String)>> {
    let (prefix, rest) = path.split_once("/info/lfs/")?;
    let kind = match (method, rest) {
        ("POST", "objects/batch") => Ok(Kind::Batch),
        (_, "objects/batch") => Err((405, format!("{method} not allowed here"))),
        (_, "locks") => Ok(Kind::Locks),
        (_, locks) if locks.starts_with("locks/") => Ok(Kind::Locks),
        (method, object) => match object.strip_prefix("objects/") {
            Some(oid) if !is_oid(oid) => Err((404, "not an LFS object ID".to_owned())),
            Some(oid) if method == "GET" => Ok(Kind::Download(oid.to_owned())),
            Some(oid) if method == "PUT" => Ok(Kind::Upload(oid.to_owned())),
            Some(_) => Err((405, format!("{method} not allowed here"))),
            None => Err((404, "not a Git LFS API path".to_owned())),
        },
    };
    Some(kind.map(|kind| Request {
        prefix: prefix.to_owned(),
        kind,
    }))
}

/// A SHA-256 in lower-case hex, as LFS names objects.
fn is_oid(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// One object of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Pointer {
    /// Its SHA-256.
    pub oid: String,
    /// Its size in bytes.
    pub size: u64,
}

/// A batch request's body (the fields the emulator reads).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct BatchRequest {
    /// `download` or `upload`.
    pub operation: String,
    /// The objects.
    pub objects: Vec<Pointer>,
    /// Transfer adapters the client offers; `basic` when absent.
    #[serde(default)]
    pub transfers: Option<Vec<String>>,
}

/// Reads and parses a batch request's body.
pub fn read_batch(head: &http::Head, reader: &mut impl BufRead) -> Result<BatchRequest, String> {
    let body = head.body().map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    http::copy_body(body, &mut reader.take(MAX_BATCH), &mut bytes)
        .map_err(|e| format!("batch request: {e} (at most {MAX_BATCH} bytes)"))?;
    let batch: BatchRequest =
        serde_json::from_slice(&bytes).map_err(|e| format!("batch request: {e}"))?;
    if batch.operation != "download" && batch.operation != "upload" {
        return Err(format!("unknown batch operation {:?}", batch.operation));
    }
    if let Some(oid) = batch.objects.iter().find(|o| !is_oid(&o.oid)) {
        return Err(format!("{:?} is not an LFS object ID", oid.oid));
    }
    if let Some(transfers) = &batch.transfers
        && !transfers.iter().any(|t| t == "basic")
    {
        return Err("only the basic transfer is served".to_owned());
    }
    Ok(batch)
}

/// Where repository `directory` keeps object `oid`.
pub fn object_path(directory: &Path, oid: &str) -> PathBuf {
    directory
        .join("lfs/objects")
        .join(&oid[..2])
        .join(&oid[2..4])
        .join(oid)
}

/// The batch answer: for each object, where to download or upload it, with `authorization`
/// (the request's own header) to send there. Objects a download asks for that are missing get
/// an error; objects an upload sends that are already stored get no action.
pub fn batch_answer(
    batch: &BatchRequest,
    directory: &Path,
    base: &str,
    authorization: &str,
) -> serde_json::Value {
    let objects: Vec<serde_json::Value> = batch
        .objects
        .iter()
        .map(|object| {
            let stored = std::fs::metadata(object_path(directory, &object.oid))
                .is_ok_and(|m| m.len() == object.size);
            let action = serde_json::json!({
                "href": format!("{base}/info/lfs/objects/{}", object.oid),
                "header": { "Authorization": authorization },
                "expires_in": 3600,
            });
            let mut answer = serde_json::json!({
                "oid": object.oid,
                "size": object.size,
                "authenticated": true,
            });
            match (batch.operation.as_str(), stored) {
                ("download", true) => answer["actions"] = serde_json::json!({ "download": action }),
                ("download", false) => {
                    answer["error"] =
                        serde_json::json!({ "code": 404, "message": "Object does not exist" });
                }
                (_, false) => answer["actions"] = serde_json::json!({ "upload": action }),
                (_, true) => {}
            }
            answer
        })
        .collect();
    serde_json::json!({ "transfer": "basic", "objects": objects })
}

/// Stores an uploaded object, checking that its bytes hash to `oid`; `Err` says why not.
pub fn store(
    head: &http::Head,
    reader: &mut impl BufRead,
    directory: &Path,
    oid: &str,
) -> Result<u64, String> {
    let body = head.body().map_err(|e| e.to_string())?;
    let path = object_path(directory, oid);
    let parent = path.parent().expect("an object path has a parent");
    std::fs::create_dir_all(parent).map_err(|e| format!("cannot store the object: {e}"))?;
    let partial = parent.join(format!("{oid}.partial-{}", std::process::id()));
    let mut hashing = Hashing {
        file: File::create(&partial).map_err(|e| format!("cannot store the object: {e}"))?,
        digest: ring::digest::Context::new(&ring::digest::SHA256),
    };
    let length = http::copy_body(body, reader, &mut hashing);
    let digest = hex(hashing.digest.finish().as_ref());
    let result = match length {
        Err(e) => Err(format!("upload: {e}")),
        Ok(_) if digest != oid => Err(format!("the object's bytes hash to {digest}, not {oid}")),
        Ok(length) => std::fs::rename(&partial, &path)
            .map(|()| length)
            .map_err(|e| format!("cannot store the object: {e}")),
    };
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}

/// Writes a stored object as a whole response.
pub fn send(directory: &Path, oid: &str, out: &mut impl Write) -> Result<u64, String> {
    let mut file =
        File::open(object_path(directory, oid)).map_err(|_| "no such object".to_owned())?;
    let length = file.metadata().map_err(|e| e.to_string())?.len();
    let headers = [
        (
            "Content-Type".to_owned(),
            "application/octet-stream".to_owned(),
        ),
        ("Content-Length".to_owned(), length.to_string()),
    ];
    http::write_head(out, 200, &headers).map_err(|e| e.to_string())?;
    io::copy(&mut file, out).map_err(|e| e.to_string())?;
    out.flush().map_err(|e| e.to_string())?;
    Ok(length)
}

/// A file that hashes what is written to it.
struct Hashing {
    file: File,
    digest: ring::digest::Context,
}

impl Write for Hashing {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let written = self.file.write(data)?;
        self.digest.update(&data[..written]);
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const OID: &str = "4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393";

    #[test]
    fn routes_the_batch_api_the_basic_transfer_and_locks() {
        let batch = route("POST", "/team/x.git/info/lfs/objects/batch")
            .unwrap()
            .unwrap();
        assert_eq!(
            (batch.prefix.as_str(), batch.kind),
            ("/team/x.git", Kind::Batch)
        );
        let get = route("GET", &format!("/x.git/info/lfs/objects/{OID}"))
            .unwrap()
            .unwrap();
        assert_eq!(get.kind, Kind::Download(OID.into()));
        let put = route("PUT", &format!("/x.git/info/lfs/objects/{OID}"))
            .unwrap()
            .unwrap();
        assert_eq!(put.kind, Kind::Upload(OID.into()));
        let verify = route("POST", "/x.git/info/lfs/locks/verify")
            .unwrap()
            .unwrap();
        assert_eq!(verify.kind, Kind::Locks);
        assert!(route("GET", "/x.git/info/refs").is_none());
        let refused = |method: &str, path: &str| route(method, path).unwrap().unwrap_err().0;
        assert_eq!(refused("GET", "/x.git/info/lfs/objects/batch"), 405);
        assert_eq!(refused("GET", "/x.git/info/lfs/objects/../../x"), 404);
        assert_eq!(
            refused(
                "GET",
                &format!("/x.git/info/lfs/objects/{}", OID.to_uppercase())
            ),
            404
        );
        assert_eq!(
            refused("DELETE", &format!("/x.git/info/lfs/objects/{OID}")),
            405
        );
        assert_eq!(refused("GET", "/x.git/info/lfs/other"), 404);
    }

    #[test]
    fn uploads_are_stored_only_when_their_bytes_hash_to_their_id() {
        let dir = tempfile::tempdir().unwrap();
        let head = |length: usize| http::Head {
            method: "PUT".into(),
            target: format!("/x.git/info/lfs/objects/{OID}"),
            headers: vec![("Content-Length".into(), length.to_string())],
        };
        let data = b"hello world\n";
        let oid = hex(ring::digest::digest(&ring::digest::SHA256, data).as_ref());
        assert_eq!(
            oid,
            "a948904f2f0f479b8f8197694b30184b0d2ed1c1cd2a1ec0fb85d299a192a447"
        );
        assert_eq!(store(&head(12), &mut &data[..], dir.path(), &oid), Ok(12));
        let mut out = Vec::new();
        send(dir.path(), &oid, &mut out).unwrap();
        assert!(out.ends_with(b"Content-Length: 12\r\nConnection: close\r\n\r\nhello world\n"));
        let wrong = store(&head(12), &mut &b"hello World\n"[..], dir.path(), OID).unwrap_err();
        assert!(wrong.contains("hash to"), "{wrong}");
        assert!(!object_path(dir.path(), OID).exists());
        assert!(
            std::fs::read_dir(object_path(dir.path(), OID).parent().unwrap())
                .unwrap()
                .next()
                .is_none()
        );
    }

    #[test]
    fn batch_answers_say_where_and_skip_what_is_already_there() {
        let dir = tempfile::tempdir().unwrap();
        let stored = object_path(dir.path(), OID);
        std::fs::create_dir_all(stored.parent().unwrap()).unwrap();
        std::fs::write(&stored, b"abc").unwrap();
        let other = "b".repeat(64);
        let batch = |operation: &str| BatchRequest {
            operation: operation.into(),
            objects: vec![
                Pointer {
                    oid: OID.into(),
                    size: 3,
                },
                Pointer {
                    oid: other.clone(),
                    size: 5,
                },
            ],
            transfers: None,
        };
        let answer = batch_answer(&batch("download"), dir.path(), "https://h/x.git", "Basic t");
        let objects = answer["objects"].as_array().unwrap();
        assert_eq!(
            objects[0]["actions"]["download"]["href"],
            format!("https://h/x.git/info/lfs/objects/{OID}")
        );
        assert_eq!(
            objects[0]["actions"]["download"]["header"]["Authorization"],
            "Basic t"
        );
        assert_eq!(objects[1]["error"]["code"], 404);
        let answer = batch_answer(&batch("upload"), dir.path(), "https://h/x.git", "Basic t");
        let objects = answer["objects"].as_array().unwrap();
        assert!(objects[0].get("actions").is_none());
        assert!(objects[1]["actions"]["upload"]["href"].is_string());
    }
}
