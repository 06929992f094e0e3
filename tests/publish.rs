//! `blobpin publish`: the feed entry and the private torrent it writes, idempotence, directory
//! blobs, and refusals.

use std::fs;

use blobpin::feed::torrent;
use blobpin::feed::FeedEntry;
use sha2::{Digest, Sha256};

use crate::common::{run, Scratch};
use crate::swarm::write_blob;

fn sha256_hex(b: &[u8]) -> String {
    torrent::hex(&Sha256::digest(b))
}

#[test]
fn publish_writes_a_private_torrent_and_a_matching_feed_entry() {
    let s = Scratch::new("publish-file");
    let data = write_blob(&s.path("idx.bin"), 5 << 20, 11);
    let r = run(&s.dir, ["publish", "idx.bin", "--feed", "feed"]);
    assert_eq!(r.code, Some(0), "{}", r.err());
    assert!(r.out().contains("published"), "{}", r.out());
    let entry = FeedEntry::parse(&fs::read(s.path("feed/idx/latest.json")).unwrap()).unwrap();
    assert_eq!(entry.name, "idx");
    assert_eq!(entry.total_size, 5 << 20);
    assert_eq!(entry.files.len(), 1);
    assert_eq!(entry.files[0].path, "idx.bin");
    assert_eq!(entry.files[0].sha256, sha256_hex(&data));
    let tbytes = fs::read(s.path("feed/idx").join(&entry.torrent.file)).unwrap();
    assert_eq!(entry.torrent.sha256, sha256_hex(&tbytes));
    let t = torrent::parse(&tbytes).unwrap();
    assert!(t.private, "torrents must be private (BEP 27)");
    assert_eq!(t.info_hash_hex(), entry.torrent.info_hash);
    assert_eq!(t.piece_length, torrent::piece_length_for(5 << 20));
    // Every piece hash is the SHA-1 of that piece of the file.
    for (i, chunk) in data.chunks(t.piece_length as usize).enumerate() {
        assert_eq!(
            <sha1::Sha1 as sha1::Digest>::digest(chunk).as_slice(),
            &t.pieces[i]
        );
    }
    // No temporary files left behind.
    let names: Vec<_> = fs::read_dir(s.path("feed/idx"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
    // Where the data is, for `blobpin origin`.
    let source =
        fs::read_to_string(s.path("feed/idx").join(format!("{}.source", entry.version))).unwrap();
    assert_eq!(
        std::path::PathBuf::from(source),
        fs::canonicalize(s.path("idx.bin")).unwrap()
    );

    // Same content again: nothing new.
    let r = run(&s.dir, ["publish", "idx.bin", "--feed", "feed"]);
    assert_eq!(r.code, Some(0), "{}", r.err());
    assert!(r.out().contains("already published"), "{}", r.out());
    assert_eq!(fs::read_dir(s.path("feed/idx")).unwrap().count(), 3);

    // New content, explicit version: a second torrent, latest.json replaced.
    write_blob(&s.path("idx.bin"), 3 << 20, 12);
    let r = run(
        &s.dir,
        [
            "publish",
            "idx.bin",
            "--feed",
            "feed",
            "--version-name",
            "v2",
            "--tracker",
            "http://127.0.0.1:1/announce",
        ],
    );
    assert_eq!(r.code, Some(0), "{}", r.err());
    let e2 = FeedEntry::parse(&fs::read(s.path("feed/idx/latest.json")).unwrap()).unwrap();
    assert_eq!(e2.version, "v2");
    assert_ne!(e2.torrent.info_hash, entry.torrent.info_hash);
    assert!(
        s.path("feed/idx").join(&entry.torrent.file).exists(),
        "old torrents stay for seeding"
    );
    // The same version name twice is refused.
    write_blob(&s.path("idx.bin"), 3 << 20, 13);
    let r = run(
        &s.dir,
        [
            "publish",
            "idx.bin",
            "--feed",
            "feed",
            "--version-name",
            "v2",
        ],
    );
    assert_eq!(r.code, Some(1));
    assert!(
        r.err().contains("v2.torrent") && r.err().contains("already exists"),
        "{}",
        r.err()
    );
}

#[test]
fn publish_of_a_directory_lists_every_file_in_order() {
    let s = Scratch::new("publish-dir");
    let a = write_blob(&s.path("model/b/weights.bin"), 300_000, 21);
    let b = write_blob(&s.path("model/a.txt"), 1000, 22);
    let r = run(&s.dir, ["publish", "model", "--feed", "feed", "--json"]);
    assert_eq!(r.code, Some(0), "{}", r.err());
    let entry = FeedEntry::parse(&r.stdout).unwrap();
    assert_eq!(entry.name, "model");
    let paths: Vec<_> = entry.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["a.txt", "b/weights.bin"]);
    assert_eq!(entry.files[0].sha256, sha256_hex(&b));
    assert_eq!(entry.files[1].sha256, sha256_hex(&a));
    let t =
        torrent::parse(&fs::read(s.path("feed/model").join(&entry.torrent.file)).unwrap()).unwrap();
    assert!(t.multi_file);
    entry.matches_torrent(&t).unwrap();
}

#[test]
fn publish_refuses_bad_input_clearly() {
    let s = Scratch::new("publish-bad");
    let r = run(&s.dir, ["publish", "missing.bin", "--feed", "feed"]);
    assert_eq!(r.code, Some(1));
    assert!(
        r.err().starts_with("blobpin: ") && r.err().contains("missing.bin"),
        "{}",
        r.err()
    );
    fs::write(s.path("empty.bin"), b"").unwrap();
    let r = run(&s.dir, ["publish", "empty.bin", "--feed", "feed"]);
    assert_eq!(r.code, Some(1));
    assert!(r.err().contains("empty"), "{}", r.err());
    write_blob(&s.path("x.bin"), 1000, 1);
    let r = run(
        &s.dir,
        ["publish", "x.bin", "--feed", "feed", "--name", "../up"],
    );
    assert_eq!(r.code, Some(1));
    assert!(r.err().contains("--name"), "{}", r.err());
    let r = run(
        &s.dir,
        [
            "publish",
            "x.bin",
            "--feed",
            "feed",
            "--version-name",
            ".hidden",
        ],
    );
    assert_eq!(r.code, Some(1));
    assert!(r.err().contains("--version"), "{}", r.err());
    assert!(
        !s.path("feed/x/latest.json").exists(),
        "a refused publish wrote a feed entry"
    );
}
