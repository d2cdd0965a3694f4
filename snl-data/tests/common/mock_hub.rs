//! A local HTTP server playing the Hugging Face Hub for one dataset repo.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

pub const SHA: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678";

pub struct MockHub {
    pub url: String,
    pub log: Arc<Mutex<Vec<String>>>,
}

fn etag(bytes: &[u8]) -> String {
    // FNV-1a, enough to tell files apart
    let mut h: u64 = 0xcbf29ce484222325;
    for &b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}

fn handle(mut s: TcpStream, repo: &str, files: &HashMap<String, Vec<u8>>, log: &Mutex<Vec<String>>) {
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    if r.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let (mut content_length, mut range) = (0usize, None);
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
        let h = h.to_ascii_lowercase();
        if let Some(v) = h.strip_prefix("content-length:") {
            content_length = v.trim().parse().unwrap_or(0);
        }
        if let Some(v) = h.strip_prefix("range:") {
            range = Some(v.trim().to_owned());
        }
    }
    let mut body = vec![0; content_length];
    let _ = r.read_exact(&mut body);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or("").to_owned(), parts.next().unwrap_or("").to_owned());
    log.lock().unwrap().push(format!("{method} {path}"));
    let (path, query) = path.split_once('?').unwrap_or((&path, ""));
    let (path, blobs) = (path.to_owned(), query.split('&').any(|q| q == "blobs=true"));

    // Repo info (with each file's size if asked `blobs=true`, as the Hub does), the file tree
    // and the files, by branch or by commit; a file request with a `Range: bytes=a-b` header
    // gets those bytes (206, `Content-Range`), as from the Hub.
    let info =
        [format!("/api/datasets/{repo}/revision/main"), format!("/api/datasets/{repo}/revision/{SHA}")];
    let tree = format!("/api/datasets/{repo}/tree/{SHA}");
    let file = |path: &str| {
        ["main", SHA]
            .iter()
            .find_map(|rev| path.strip_prefix(&format!("/datasets/{repo}/resolve/{rev}/")))
            .and_then(|f| files.get(f))
    };
    let (status, headers, payload): (&str, Vec<(String, String)>, Vec<u8>) = if info.contains(&path) {
        let sibling = |f: &str, len: usize| match blobs {
            true => format!("{{\"rfilename\":\"{f}\",\"size\":{len}}}"),
            false => format!("{{\"rfilename\":\"{f}\"}}"),
        };
        let siblings: Vec<String> = files.iter().map(|(f, b)| sibling(f, b.len())).collect();
        let json = format!(
            "{{\"id\":\"{repo}\",\"sha\":\"{SHA}\",\"siblings\":[{},{}]}}",
            sibling("README.md", 0),
            siblings.join(",")
        );
        ("200 OK", vec![("Content-Type".into(), "application/json".into())], json.into_bytes())
    } else if path == tree {
        let entries: Vec<String> = files
            .iter()
            .map(|(f, b)| {
                format!("{{\"type\":\"file\",\"oid\":\"{}\",\"size\":{},\"path\":\"{f}\"}}", etag(b), b.len())
            })
            .collect();
        let json = format!("[{}]", entries.join(","));
        ("200 OK", vec![("Content-Type".into(), "application/json".into())], json.into_bytes())
    } else if let Some(f) = file(&path) {
        let mut h = vec![
            ("ETag".into(), format!("\"{}\"", etag(f))),
            ("X-Repo-Commit".into(), SHA.into()),
            ("Content-Type".into(), "application/octet-stream".into()),
        ];
        match range.as_deref().and_then(|r| byte_range(r, f.len())) {
            Some((a, b)) => {
                h.push(("Content-Range".into(), format!("bytes {a}-{b}/{}", f.len())));
                ("206 Partial Content", h, f[a..=b].to_vec())
            }
            None => ("200 OK", h, f.clone()),
        }
    } else {
        ("404 Not Found", vec![("X-Error-Code".into(), "EntryNotFound".into())], b"not found".to_vec())
    };
    let mut out = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n", payload.len());
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let _ = s.write_all(out.as_bytes());
    if method != "HEAD" {
        let _ = s.write_all(&payload);
    }
    let _ = s.flush();
}

/// The first and last byte of `bytes=a-b` or `bytes=a-` in a file of `len` bytes.
fn byte_range(spec: &str, len: usize) -> Option<(usize, usize)> {
    let (a, b) = spec.strip_prefix("bytes=")?.split_once('-')?;
    let a: usize = a.parse().ok()?;
    let b =
        if b.is_empty() { len.checked_sub(1)? } else { b.parse::<usize>().ok()?.min(len.checked_sub(1)?) };
    (a <= b).then_some((a, b))
}

pub fn serve(repo: &'static str, files: HashMap<String, Vec<u8>>) -> MockHub {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let log = Arc::new(Mutex::new(Vec::new()));
    let (log2, files) = (log.clone(), Arc::new(files));
    std::thread::spawn(move || {
        for s in listener.incoming().flatten() {
            let (log, files) = (log2.clone(), files.clone());
            std::thread::spawn(move || handle(s, repo, &files, &log));
        }
    });
    MockHub { url, log }
}
