//! Reading a release package: the CHECKSUMS file, the packaged Zarr (zip or directory), and
//! `release verify` — every checksum and the snapshot content digest recomputed from the
//! package alone, and optionally compared with the tag in a repository.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use md5::Digest;
use serde::Serialize;
use serde_json::Value;

use super::zip::{Entry, ZipReader};
use super::{ReleaseError, CHECKSUMS};
use crate::cas::PlainDigest;
use crate::repo::Repo;
use icechunk::repository::RepositoryErrorKind;

/// The header lines of CHECKSUMS (`# key: value`).
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Header {
    /// Generation time: the one field that differs between two releases of the same tag.
    pub generated: String,
    /// Tool and version.
    pub tool: String,
    /// The tag released.
    pub tag: String,
    /// Its commit id.
    pub commit: String,
    /// Identity of the source repository (recorded at its creation), or `unknown`.
    pub repository: String,
    /// File (or directory) name of the packaged Zarr.
    pub zarr: String,
    /// Snapshot content digest (hex blake3).
    pub content_digest: String,
    /// Inline threshold used to derive chunk leaves.
    pub inline_threshold: usize,
}

impl Header {
    /// Render as CHECKSUMS header lines.
    pub fn render(&self) -> String {
        format!(
            "# zarr-fuse release package: checksums of every file (spec/015-release.md)\n\
             # check MD5 lines with `grep '^MD5' CHECKSUMS | md5sum -c`, everything with `zarr-fuse release verify DIR`\n\
             # generated: {}\n# tool: {}\n# tag: {}\n# commit: {}\n# repository: {}\n# zarr: {}\n\
             # content-digest: {}\n# digest-rule: zarr-fuse/snapshot/v1 inline-threshold={}\n",
            self.generated,
            self.tool,
            self.tag,
            self.commit,
            self.repository,
            self.zarr,
            self.content_digest,
            self.inline_threshold
        )
    }
}

/// Checksums of one listed name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sums {
    /// MD5 hex (files only).
    pub md5: Option<String>,
    /// BLAKE3 hex.
    pub blake3: Option<String>,
}

/// A parsed CHECKSUMS file.
pub struct Checksums {
    /// Header fields.
    pub header: Header,
    /// Name → sums, in file order of first appearance.
    pub sums: BTreeMap<String, Sums>,
}

/// Lowercase hex of bytes.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// One `ALGO (name) = hex` line.
pub fn sum_line(algo: &str, name: &str, hex: &str) -> String {
    format!("{algo} ({name}) = {hex}\n")
}

/// Parse CHECKSUMS text.
pub fn parse_checksums(text: &str, file: &Path) -> Result<Checksums, ReleaseError> {
    let bad = |line: usize, what: &str| ReleaseError::NotAPackage {
        dir: file.to_path_buf(),
        problem: format!("{}:{line}: {what}", file.display()),
    };
    let mut h = BTreeMap::new();
    let mut sums: BTreeMap<String, Sums> = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            if let Some((k, v)) = rest.split_once(": ") {
                h.insert(k.trim().to_string(), v.trim().to_string());
            }
            continue;
        }
        let (algo, rest) = line
            .split_once(" (")
            .ok_or_else(|| bad(n, "expected 'ALGO (name) = hex'"))?;
        let (name, hexv) = rest
            .rsplit_once(") = ")
            .ok_or_else(|| bad(n, "expected 'ALGO (name) = hex'"))?;
        let e = sums.entry(name.to_string()).or_default();
        match algo {
            "MD5" => e.md5 = Some(hexv.to_string()),
            "BLAKE3" => e.blake3 = Some(hexv.to_string()),
            other => return Err(bad(n, &format!("unknown algorithm '{other}'"))),
        }
    }
    let get = |k: &str| {
        h.get(k)
            .cloned()
            .ok_or_else(|| bad(0, &format!("header field '{k}' missing")))
    };
    let rule = get("digest-rule")?;
    let inline_threshold = rule
        .rsplit_once("inline-threshold=")
        .and_then(|(_, v)| v.parse().ok())
        .ok_or_else(|| bad(0, "digest-rule has no inline-threshold"))?;
    Ok(Checksums {
        header: Header {
            generated: get("generated")?,
            tool: get("tool")?,
            tag: get("tag")?,
            commit: get("commit")?,
            repository: get("repository")?,
            zarr: get("zarr")?,
            content_digest: get("content-digest")?,
            inline_threshold,
        },
        sums,
    })
}

/// MD5 and BLAKE3 of a file, streamed.
pub fn file_sums(path: &Path) -> std::io::Result<(String, String, u64)> {
    let mut f = BufReader::with_capacity(1 << 20, File::open(path)?);
    let mut md5 = md5::Md5::new();
    let mut b3 = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf)?;
        if k == 0 {
            break;
        }
        md5.update(&buf[..k]);
        b3.update(&buf[..k]);
        n += k as u64;
    }
    Ok((hex(&md5.finalize()), b3.finalize().to_hex().to_string(), n))
}

/// A node of the packaged hierarchy.
#[derive(Clone, Debug)]
pub struct PlainNode {
    /// `/`-rooted path.
    pub path: String,
    /// Array (else group).
    pub is_array: bool,
    /// The zarr.json bytes.
    pub zarr_json: Vec<u8>,
    /// Chunk key encoding: (v2?, separator).
    pub encoding: (bool, String),
    /// The store key prefix of this node's entries (`""` for the root).
    prefix: String,
}

impl PlainNode {
    /// A node at `path` (`/`-rooted).
    pub fn new(path: String, is_array: bool, zarr_json: Vec<u8>, encoding: (bool, String)) -> Self {
        let p = path.trim_start_matches('/');
        let prefix = if p.is_empty() {
            String::new()
        } else {
            format!("{p}/")
        };
        PlainNode {
            path,
            is_array,
            zarr_json,
            encoding,
            prefix,
        }
    }

    /// Parse a node from its key (`a/b/zarr.json`) and document.
    pub fn parse(key: &str, bytes: Vec<u8>) -> Result<PlainNode, String> {
        let rel = key
            .strip_suffix("zarr.json")
            .ok_or_else(|| format!("'{key}' is not a zarr.json"))?
            .trim_end_matches('/');
        let v: Value =
            serde_json::from_slice(&bytes).map_err(|e| format!("{key}: not JSON ({e})"))?;
        let is_array = match v.get("node_type").and_then(Value::as_str) {
            Some("array") => true,
            Some("group") => false,
            _ => return Err(format!("{key}: node_type is neither array nor group")),
        };
        let encoding = key_encoding(&v).map_err(|e| format!("{key}: {e}"))?;
        Ok(PlainNode::new(format!("/{rel}"), is_array, bytes, encoding))
    }

    /// The store key prefix of this node's entries (`""` for the root).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The store key of chunk `coords`.
    pub fn chunk_key(&self, coords: &[u32]) -> String {
        let (v2, sep) = &self.encoding;
        let parts: Vec<String> = coords.iter().map(u32::to_string).collect();
        let tail = if *v2 {
            if parts.is_empty() {
                "0".to_string()
            } else {
                parts.join(sep)
            }
        } else {
            std::iter::once("c".to_string())
                .chain(parts)
                .collect::<Vec<_>>()
                .join(sep)
        };
        format!("{}{tail}", self.prefix())
    }

    /// Chunk coordinates of `key` if it is one of this array's chunk keys.
    pub fn parse_chunk(&self, key: &str) -> Option<Vec<u32>> {
        let rest = key.strip_prefix(self.prefix.as_str())?;
        let (v2, sep) = &self.encoding;
        let coords = if *v2 {
            rest.split(sep.as_str())
                .map(|p| p.parse().ok())
                .collect::<Option<Vec<u32>>>()?
        } else if rest == "c" {
            vec![]
        } else {
            let r = rest.strip_prefix(&format!("c{sep}"))?;
            r.split(sep.as_str())
                .map(|p| p.parse().ok())
                .collect::<Option<Vec<u32>>>()?
        };
        (self.chunk_key(&coords) == key).then_some(coords)
    }
}

/// The chunk key encoding of a zarr.json: (is v2, separator).
pub fn key_encoding(v: &Value) -> Result<(bool, String), String> {
    let Some(enc) = v.get("chunk_key_encoding") else {
        return Ok((false, "/".into()));
    };
    let name = enc.get("name").and_then(Value::as_str).unwrap_or("default");
    let sep = enc
        .get("configuration")
        .and_then(|c| c.get("separator"))
        .and_then(Value::as_str);
    match name {
        "default" => Ok((false, sep.unwrap_or("/").to_string())),
        "v2" => Ok((true, sep.unwrap_or(".").to_string())),
        other => Err(format!("unsupported chunk_key_encoding '{other}'")),
    }
}

/// Where the packaged Zarr is read from.
pub enum ZarrSource {
    /// A `.zarr.zip`.
    Zip {
        /// Reader.
        reader: ZipReader<BufReader<File>>,
        /// Entries by name.
        by_name: BTreeMap<String, Entry>,
    },
    /// A `.zarr` directory.
    Dir(PathBuf),
}

impl ZarrSource {
    /// Open the Zarr at `path` (a zip file or a directory).
    pub fn open(path: &Path) -> Result<ZarrSource, String> {
        if path.is_dir() {
            return Ok(ZarrSource::Dir(path.to_path_buf()));
        }
        let f = File::open(path).map_err(|e| format!("cannot open: {e}"))?;
        let reader = ZipReader::open(BufReader::new(f)).map_err(|e| e.to_string())?;
        let mut by_name = BTreeMap::new();
        for e in reader.entries() {
            if by_name.insert(e.name.clone(), e.clone()).is_some() {
                return Err(format!("entry '{}' appears twice", e.name));
            }
        }
        Ok(ZarrSource::Zip { reader, by_name })
    }

    /// All store keys, sorted.
    pub fn keys(&self) -> Result<Vec<String>, String> {
        match self {
            ZarrSource::Zip { by_name, .. } => Ok(by_name.keys().cloned().collect()),
            ZarrSource::Dir(d) => {
                let mut out = vec![];
                walk(d, d, &mut out).map_err(|e| format!("listing {}: {e}", d.display()))?;
                out.sort();
                Ok(out)
            }
        }
    }

    /// The bytes of `key` (CRC-checked for zips).
    pub fn read(&mut self, key: &str) -> Result<Vec<u8>, String> {
        match self {
            ZarrSource::Zip { reader, by_name } => {
                let e = by_name
                    .get(key)
                    .cloned()
                    .ok_or_else(|| format!("no entry '{key}'"))?;
                reader.read(&e).map_err(|e| e.to_string())
            }
            ZarrSource::Dir(d) => std::fs::read(d.join(key)).map_err(|e| format!("{key}: {e}")),
        }
    }
}

/// Relative paths of all files under `dir` (with `/` separators).
pub fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let p = e.path();
        if e.file_type()?.is_dir() {
            walk(root, &p, out)?;
        } else if let Ok(rel) = p.strip_prefix(root) {
            out.push(
                rel.components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join("/"),
            );
        }
    }
    Ok(())
}

/// The packaged hierarchy: nodes by path and each array's chunk keys.
pub struct Layout {
    /// Nodes by path.
    pub nodes: BTreeMap<String, PlainNode>,
    /// Array path → (coords → key).
    pub chunks: BTreeMap<String, BTreeMap<Vec<u32>, String>>,
    /// Keys that are neither metadata nor a chunk of an array.
    pub stray: Vec<String>,
}

impl Layout {
    /// Sort `keys` into nodes and chunks; `meta(key)` returns a zarr.json's bytes.
    pub fn build(
        keys: &[String],
        mut meta: impl FnMut(&str) -> Result<Vec<u8>, String>,
    ) -> Result<Layout, String> {
        let mut nodes = BTreeMap::new();
        for k in keys
            .iter()
            .filter(|k| *k == "zarr.json" || k.ends_with("/zarr.json"))
        {
            let n = PlainNode::parse(k, meta(k)?)?;
            nodes.insert(n.path.clone(), n);
        }
        if !nodes.contains_key("/") {
            return Err("no root zarr.json".into());
        }
        let mut chunks: BTreeMap<String, BTreeMap<Vec<u32>, String>> = BTreeMap::new();
        let mut stray = vec![];
        let arrays: Vec<&PlainNode> = nodes.values().filter(|n| n.is_array).collect();
        for k in keys
            .iter()
            .filter(|k| *k != "zarr.json" && !k.ends_with("/zarr.json"))
        {
            // the deepest array whose chunk key this is
            let hit = arrays
                .iter()
                .filter_map(|a| a.parse_chunk(k).map(|c| (a.path.len(), a.path.clone(), c)))
                .max_by_key(|(l, _, _)| *l);
            match hit {
                Some((_, path, coords)) => {
                    chunks.entry(path).or_default().insert(coords, k.clone());
                }
                None => stray.push(k.clone()),
            }
        }
        Ok(Layout {
            nodes,
            chunks,
            stray,
        })
    }

    /// "array /a/b, chunk [0, 1]" for a chunk key, or "metadata of /a" for a zarr.json.
    pub fn describe(&self, key: &str) -> String {
        if key == "zarr.json" || key.ends_with("/zarr.json") {
            let p = key.trim_end_matches("zarr.json").trim_end_matches('/');
            return format!("metadata of /{p}");
        }
        for (array, cs) in &self.chunks {
            if let Some((c, _)) = cs.iter().find(|(_, k)| k.as_str() == key) {
                return format!("array {array}, chunk {c:?}");
            }
        }
        "not part of any array".into()
    }
}

/// What `release verify` found.
#[derive(Clone, Debug, Serialize)]
pub struct VerifyReport {
    /// The package directory.
    pub dir: String,
    /// Header of CHECKSUMS.
    pub header: Header,
    /// Files checked (MD5 and BLAKE3).
    pub files: u64,
    /// Zarr entries checked (BLAKE3, CRC for zips).
    pub entries: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Digest recomputed from the packaged Zarr, if it could be read.
    pub computed_digest: Option<String>,
    /// Whether the package was also compared with a repository.
    pub repo_checked: Option<String>,
    /// Everything wrong, one line each.
    pub problems: Vec<String>,
    /// No problems.
    pub ok: bool,
}

/// Recompute every checksum and the content digest of the package in `dir`.
pub fn verify(dir: &Path, progress: &(dyn Fn(u64) + Sync)) -> Result<VerifyReport, ReleaseError> {
    let not_pkg = |problem: String| ReleaseError::NotAPackage {
        dir: dir.to_path_buf(),
        problem,
    };
    if !dir.is_dir() {
        return Err(not_pkg(format!("{} is not a directory", dir.display())));
    }
    let cpath = dir.join(CHECKSUMS);
    let text = std::fs::read_to_string(&cpath)
        .map_err(|e| not_pkg(format!("cannot read {}: {e}", cpath.display())))?;
    let ck = parse_checksums(&text, &cpath)?;
    let h = ck.header.clone();
    let mut report = VerifyReport {
        dir: dir.display().to_string(),
        header: h.clone(),
        files: 0,
        entries: 0,
        bytes: 0,
        computed_digest: None,
        repo_checked: None,
        problems: vec![],
        ok: false,
    };
    let zip_mode = h.zarr.ends_with(".zip");
    let entry_prefix = format!("{}/", h.zarr);
    let dir_digests = check_files(dir, &ck, zip_mode, &entry_prefix, &mut report, progress)?;
    // the packaged Zarr
    let Some((mut src, keys, layout)) = open_zarr(&dir.join(&h.zarr), &h.zarr, &mut report) else {
        return Ok(finish(report));
    };
    for k in &layout.stray {
        report.problems.push(format!(
            "{}: entry '{k}' is neither metadata nor a chunk of an array",
            h.zarr
        ));
    }
    let entries = EntryCheck {
        ck: &ck,
        zip_mode,
        entry_prefix: &entry_prefix,
        layout: &layout,
        dir_digests: &dir_digests,
    };
    if let Some(digests) = entries.digests(&keys, &mut src, &mut report, progress) {
        let computed = layout_digest(&layout, &digests, h.inline_threshold);
        if computed != h.content_digest {
            report.problems.push(format!(
                "content digest recomputed from {} is {computed}, CHECKSUMS records {}",
                h.zarr, h.content_digest
            ));
        }
        report.computed_digest = Some(computed);
    }
    Ok(finish(report))
}

/// Check every file CHECKSUMS lists (and that nothing else is there); gives the size and BLAKE3
/// of the entries of a `.zarr` directory by key.
fn check_files(
    dir: &Path,
    ck: &Checksums,
    zip_mode: bool,
    entry_prefix: &str,
    report: &mut VerifyReport,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<BTreeMap<String, (u64, String)>, ReleaseError> {
    let not_pkg = |problem: String| ReleaseError::NotAPackage {
        dir: dir.to_path_buf(),
        problem,
    };
    // files on disk
    let mut present = vec![];
    walk(dir, dir, &mut present).map_err(|e| not_pkg(format!("listing: {e}")))?;
    let present: BTreeSet<String> = present.into_iter().filter(|p| p != CHECKSUMS).collect();
    let is_file_line = |name: &str| !zip_mode || !name.starts_with(entry_prefix);
    let mut dir_digests: BTreeMap<String, (u64, String)> = BTreeMap::new();
    for (name, s) in ck.sums.iter().filter(|(n, _)| is_file_line(n)) {
        if !present.contains(name) {
            report
                .problems
                .push(format!("{name}: listed in CHECKSUMS but missing"));
            continue;
        }
        match file_sums(&dir.join(name)) {
            Ok((md5, b3, n)) => {
                report.files += 1;
                report.bytes += n;
                progress(n);
                if s.md5.as_deref().is_some_and(|m| m != md5) {
                    report.problems.push(format!(
                        "{name}: MD5 {md5} does not match CHECKSUMS ({})",
                        s.md5.as_deref().unwrap_or_default()
                    ));
                }
                if s.blake3.as_deref() != Some(b3.as_str()) {
                    report.problems.push(format!(
                        "{name}: BLAKE3 {b3} does not match CHECKSUMS ({})",
                        s.blake3.as_deref().unwrap_or("none")
                    ));
                }
                if let Some(key) = name.strip_prefix(entry_prefix) {
                    dir_digests.insert(key.to_string(), (n, b3));
                }
            }
            Err(e) => report.problems.push(format!("{name}: cannot read: {e}")),
        }
    }
    for p in &present {
        if !ck.sums.contains_key(p) {
            report
                .problems
                .push(format!("{p}: not listed in CHECKSUMS (unexpected file)"));
        }
    }
    Ok(dir_digests)
}

/// The packaged Zarr opened, its keys and layout (`None`: a problem, reported).
fn open_zarr(
    zpath: &Path,
    name: &str,
    report: &mut VerifyReport,
) -> Option<(ZarrSource, Vec<String>, Layout)> {
    let opened = ZarrSource::open(zpath).and_then(|mut src| {
        let keys = src.keys()?;
        let layout = Layout::build(&keys, |k| src.read(k))?;
        Ok((src, keys, layout))
    });
    match opened {
        Ok(o) => Some(o),
        Err(e) => {
            report.problems.push(format!("{name}: {e}"));
            None
        }
    }
}

/// What checking the entries of the packaged Zarr needs.
struct EntryCheck<'a> {
    ck: &'a Checksums,
    zip_mode: bool,
    entry_prefix: &'a str,
    layout: &'a Layout,
    dir_digests: &'a BTreeMap<String, (u64, String)>,
}

impl EntryCheck<'_> {
    /// Each entry's size and digest: from the file pass (directories) or by reading the entry
    /// (zips, checked against CHECKSUMS); `None` when one could not be read.
    fn digests(
        &self,
        keys: &[String],
        src: &mut ZarrSource,
        report: &mut VerifyReport,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Option<BTreeMap<String, (u64, blake3::Hash)>> {
        let (ck, zip_mode, entry_prefix, layout) =
            (self.ck, self.zip_mode, self.entry_prefix, self.layout);
        let h = &ck.header;
        let dir_digests = self.dir_digests;
        let mut digests: BTreeMap<String, (u64, blake3::Hash)> = BTreeMap::new();
        let mut unreadable = false;
        for k in keys {
            let listed = ck
                .sums
                .get(&format!("{entry_prefix}{k}"))
                .and_then(|s| s.blake3.clone());
            let got = if zip_mode {
                match src.read(k) {
                    Ok(b) => {
                        report.bytes += b.len() as u64;
                        progress(b.len() as u64);
                        Some((b.len() as u64, blake3::hash(&b)))
                    }
                    Err(e) => {
                        report
                            .problems
                            .push(format!("{}: {e} ({})", h.zarr, layout.describe(k)));
                        None
                    }
                }
            } else {
                dir_digests
                    .get(k)
                    .and_then(|(n, d)| blake3::Hash::from_hex(d).ok().map(|d| (*n, d)))
            };
            report.entries += 1;
            let Some((n, d)) = got else {
                unreadable = true;
                continue;
            };
            if zip_mode && listed.as_deref() != Some(d.to_hex().as_str()) {
                report.problems.push(format!(
                    "{}: entry '{k}' ({}): BLAKE3 {} does not match CHECKSUMS ({})",
                    h.zarr,
                    layout.describe(k),
                    d.to_hex(),
                    listed.as_deref().unwrap_or("not listed")
                ));
            }
            digests.insert(k.to_string(), (n, d));
        }
        let keyset: BTreeSet<&str> = keys.iter().map(String::as_str).collect();
        for name in ck.sums.keys() {
            if let Some(k) = name.strip_prefix(entry_prefix) {
                if zip_mode && !keyset.contains(k) {
                    report.problems.push(format!(
                        "{}: entry '{k}' listed in CHECKSUMS but missing",
                        h.zarr
                    ));
                }
            }
        }
        (!unreadable).then_some(digests)
    }
}

/// The content digest of a package's layout from its entries' digests.
fn layout_digest(
    layout: &Layout,
    digests: &BTreeMap<String, (u64, blake3::Hash)>,
    inline_threshold: usize,
) -> String {
    let mut pd = PlainDigest::new(inline_threshold);
    for node in layout.nodes.values() {
        pd.node(&node.path, node.is_array, &node.zarr_json);
        for (coords, key) in layout.chunks.get(&node.path).into_iter().flatten() {
            if let Some((n, d)) = digests.get(key) {
                pd.chunk(coords, *n, d);
            }
        }
    }
    pd.finish()
}

fn finish(mut r: VerifyReport) -> VerifyReport {
    r.ok = r.problems.is_empty();
    r
}

/// Also check that the package equals tag `header.tag` in `repo`.
pub async fn verify_with_repo(report: &mut VerifyReport, repo: &Repo) -> Result<(), ReleaseError> {
    let h = report.header.clone();
    let loc = repo.location().to_string();
    report.repo_checked = Some(loc.clone());
    let ident = super::repository_identity(repo).await?;
    if ident != h.repository && h.repository != "unknown" {
        report.problems.push(format!(
            "the package comes from another repository: it records repository {}, {loc} is {ident}",
            h.repository
        ));
    }
    match repo.icechunk().lookup_tag(&h.tag).await {
        Err(e) if matches!(e.kind(), RepositoryErrorKind::Ref(_)) => report.problems.push(format!(
            "tag '{}' does not exist in {loc} (see `zarr-fuse tag {loc} list`)",
            h.tag
        )),
        Err(e) => report.problems.push(format!(
            "cannot look up tag '{}' in {loc}: {}",
            h.tag,
            crate::repo::one_line(&e.to_string())
        )),
        Ok(id) if id.to_string() != h.commit => report.problems.push(format!(
            "tag '{}' in {loc} is commit {id}, the package holds commit {}",
            h.tag, h.commit
        )),
        Ok(id) => {
            let session = repo.session_at(&id).await?;
            let digest = crate::cas::content_digest(&session).await.map_err(|e| {
                ReleaseError::Repo(crate::repo::RepoError::from_engine(
                    "computing the content digest",
                    e,
                ))
            })?;
            match &report.computed_digest {
                Some(c) if *c == digest => {}
                Some(c) => report.problems.push(format!(
                    "the packaged Zarr (digest {c}) differs from tag '{}' in {loc} (digest {digest})",
                    h.tag
                )),
                None => report
                    .problems
                    .push("the packaged Zarr could not be read, so it cannot be compared".into()),
            }
        }
    }
    report.ok = report.problems.is_empty();
    Ok(())
}
