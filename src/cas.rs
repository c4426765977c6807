//! Content addressing with blake3: chunk ids derived from chunk bytes, dedup, the snapshot
//! content digest, and `verify`.
//!
//! A chunk object we write is named `chunks/<id>` where `id` is the first 12 bytes of the blake3
//! of its encoded bytes (icechunk's chunk ids are 12 bytes). Writing it is a create-if-absent put,
//! so identical bytes are stored once per repository. The snapshot content digest is a blake3
//! Merkle root over every node's metadata and every chunk's leaf (spec/004-content-addressing.md).

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use icechunk::format::manifest::{ChunkPayload, ChunkRef};
use icechunk::format::snapshot::{NodeData, NodeSnapshot};
use icechunk::format::{ChunkId, ChunkIndices, Path, SnapshotId};
use icechunk::session::{Session, SessionError};
use icechunk::storage::{VersionInfo, VersionedUpdateResult};
use icechunk::Repository;
use serde::{Deserialize, Serialize};
use tokio::sync::{OnceCell, RwLock};
use zarrs_icechunk::AsyncIcechunkStore;
use zarrs_storage::{
    byte_range::ByteRangeIterator, AsyncListableStorageTraits, AsyncMaybeBytesIterator,
    AsyncReadableStorageTraits, AsyncWritableStorageTraits, MaybeBytes, OffsetBytesIterator,
    StorageError as ZStorageError, StoreKey, StoreKeys, StoreKeysPrefixes, StorePrefix,
};

/// The chunk id for bytes with this blake3 digest.
pub fn chunk_id(digest: &blake3::Hash) -> ChunkId {
    let mut id = [0u8; 12];
    id.copy_from_slice(&digest.as_bytes()[..12]);
    ChunkId::new(id)
}

/// Whether `id` is the content address of bytes with this digest.
pub fn id_matches(id: &ChunkId, digest: &blake3::Hash) -> bool {
    id.0[..] == digest.as_bytes()[..12]
}

/// Object key of a chunk.
pub fn chunk_key(id: &ChunkId) -> String {
    format!("chunks/{id}")
}

/// The Merkle leaf of a chunk as the manifest records it: the content address (a CAS ref),
/// the blake3 of inline bytes, or, for chunks written by other tools, their id and extent.
pub fn leaf_from_payload(payload: &ChunkPayload) -> Vec<u8> {
    match payload {
        ChunkPayload::Inline(b) => {
            let mut v = b"inline".to_vec();
            v.extend_from_slice(blake3::hash(b).as_bytes());
            v
        }
        ChunkPayload::Ref(r) => {
            let mut v = b"ref".to_vec();
            v.extend_from_slice(&r.id.0);
            v.extend_from_slice(&r.offset.to_le_bytes());
            v.extend_from_slice(&r.length.to_le_bytes());
            v
        }
        other => {
            let mut v = b"virtual".to_vec();
            v.extend_from_slice(format!("{other:?}").as_bytes());
            v
        }
    }
}

fn node_leaf(node: &NodeSnapshot) -> blake3::Hasher {
    let is_array = matches!(node.node_data, NodeData::Array { .. });
    node_hasher(&node.path.to_string(), is_array, &node.user_data)
}

fn node_hasher(path: &str, is_array: bool, zarr_json: &[u8]) -> blake3::Hasher {
    let mut h = blake3::Hasher::new();
    h.update(b"zarr-fuse/node/v1\0");
    h.update(path.as_bytes());
    h.update(b"\0");
    h.update(if is_array { b"array\0" } else { b"group\0" });
    h.update(&(zarr_json.len() as u64).to_le_bytes());
    h.update(zarr_json);
    h
}

/// The snapshot content digest rebuilt from plain Zarr content (a release package): each node's
/// `zarr.json` bytes and each chunk's encoded bytes, with the chunk's manifest form derived as
/// zarr-fuse writes it (inline up to `inline_threshold` bytes, else a content-addressed ref).
pub struct PlainDigest {
    inline_threshold: usize,
    nodes: BTreeMap<String, blake3::Hash>,
    current: Option<(String, blake3::Hasher)>,
}

impl PlainDigest {
    /// A digest for a repository whose inline threshold is `inline_threshold` bytes.
    pub fn new(inline_threshold: usize) -> Self {
        PlainDigest {
            inline_threshold,
            nodes: BTreeMap::new(),
            current: None,
        }
    }

    fn close(&mut self) {
        if let Some((path, h)) = self.current.take() {
            self.nodes.insert(path, h.finalize());
        }
    }

    /// Start node `path` (`/` for the root); its chunks follow in coordinate order.
    pub fn node(&mut self, path: &str, is_array: bool, zarr_json: &[u8]) {
        self.close();
        self.current = Some((path.to_string(), node_hasher(path, is_array, zarr_json)));
    }

    /// Add a chunk of the current node, given its coordinates, encoded size and blake3.
    pub fn chunk(&mut self, coords: &[u32], len: u64, digest: &blake3::Hash) {
        let leaf = if len <= self.inline_threshold as u64 {
            let mut v = b"inline".to_vec();
            v.extend_from_slice(digest.as_bytes());
            v
        } else {
            leaf_from_payload(&ChunkPayload::Ref(ChunkRef {
                id: chunk_id(digest),
                offset: 0,
                length: len,
            }))
        };
        if let Some((_, h)) = self.current.as_mut() {
            h.update(&coord_bytes(&ChunkIndices(coords.to_vec())));
            h.update(blake3::hash(&leaf).as_bytes());
        }
    }

    /// The root digest.
    pub fn finish(mut self) -> String {
        self.close();
        root_of(self.nodes)
    }
}

fn coord_bytes(c: &ChunkIndices) -> Vec<u8> {
    let mut v = Vec::with_capacity(4 + 4 * c.0.len());
    v.extend_from_slice(&(c.0.len() as u32).to_le_bytes());
    for i in &c.0 {
        v.extend_from_slice(&i.to_le_bytes());
    }
    v
}

/// Combine node hashes (path order) into the root digest.
fn root_of(nodes: BTreeMap<String, blake3::Hash>) -> String {
    let mut h = blake3::Hasher::new();
    h.update(b"zarr-fuse/snapshot/v1\0");
    for (path, d) in nodes {
        h.update(path.as_bytes());
        h.update(b"\0");
        h.update(d.as_bytes());
    }
    h.finalize().to_hex().to_string()
}

/// All nodes of a session, sorted by path.
pub async fn list_nodes(session: &Session) -> Result<Vec<NodeSnapshot>, SessionError> {
    let mut nodes: Vec<NodeSnapshot> = session
        .list_nodes(&Path::root())
        .await?
        .collect::<Result<_, _>>()?;
    nodes.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(nodes)
}

/// All chunk payloads of one array, by chunk coordinates.
pub async fn array_chunks(
    session: &Session,
    node: &NodeSnapshot,
) -> Result<BTreeMap<ChunkIndices, ChunkPayload>, SessionError> {
    session
        .all_node_chunks(node)
        .await
        .map_ok(|(_, info)| (info.coord, info.payload))
        .try_collect()
        .await
}

/// The content digest of the session's current state, from the manifests (no chunk reads).
pub async fn content_digest(session: &Session) -> Result<String, SessionError> {
    let mut nodes = BTreeMap::new();
    for node in list_nodes(session).await? {
        let mut h = node_leaf(&node);
        if matches!(node.node_data, NodeData::Array { .. }) {
            for (coord, payload) in array_chunks(session, &node).await? {
                h.update(&coord_bytes(&coord));
                h.update(blake3::hash(&leaf_from_payload(&payload)).as_bytes());
            }
        }
        nodes.insert(node.path.to_string(), h.finalize());
    }
    Ok(root_of(nodes))
}

/// One chunk written by a transaction, as recorded in the commit's side record.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct WrittenChunk {
    /// Array path.
    pub array: String,
    /// Chunk coordinates.
    pub coords: Vec<u32>,
    /// Full blake3 (hex) of the encoded bytes.
    pub blake3: String,
    /// Encoded size.
    pub bytes: u64,
    /// Whether the bytes were already stored (deduplicated) or inlined in the manifest.
    pub stored: StoredAs,
}

/// How a written chunk was stored.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StoredAs {
    /// A new chunk object.
    New,
    /// An existing object with the same bytes was referenced.
    Deduplicated,
    /// Inline in the manifest (small chunk).
    Inline,
}

/// The chunks a transaction wrote, held compactly until its commit (a chunk takes ~50 bytes
/// here against ~230 as a [`WrittenChunk`]: an update may write a million chunks). Serializes as
/// the list of [`WrittenChunk`]s.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WrittenLog {
    /// Array paths, each once, with their number of dimensions.
    arrays: Vec<(String, usize)>,
    entries: Vec<Entry>,
    /// The entries' chunk coordinates, one after the other.
    coords: Vec<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    array: u32,
    blake3: [u8; 32],
    bytes: u64,
    stored: StoredAs,
}

impl WrittenLog {
    /// Append one chunk.
    pub fn push(
        &mut self,
        array: &str,
        coords: &[u32],
        digest: &blake3::Hash,
        bytes: u64,
        stored: StoredAs,
    ) {
        let a = match self
            .arrays
            .iter()
            .rposition(|(p, n)| p == array && *n == coords.len())
        {
            Some(a) => a,
            None => {
                self.arrays.push((array.to_string(), coords.len()));
                self.arrays.len() - 1
            }
        };
        self.entries.push(Entry {
            array: a as u32,
            blake3: *digest.as_bytes(),
            bytes,
            stored,
        });
        self.coords.extend_from_slice(coords);
    }

    /// Number of chunks.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no chunk was written.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The chunks, in the order written.
    pub fn iter(&self) -> impl Iterator<Item = WrittenChunk> + '_ {
        let mut at = 0;
        self.entries.iter().map(move |e| {
            let (array, n) = &self.arrays[e.array as usize];
            let coords = self.coords[at..at + n].to_vec();
            at += n;
            WrittenChunk {
                array: array.clone(),
                coords,
                blake3: blake3::Hash::from_bytes(e.blake3).to_hex().to_string(),
                bytes: e.bytes,
                stored: e.stored,
            }
        })
    }
}

impl Serialize for WrittenLog {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for WrittenLog {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let list = Vec::<WrittenChunk>::deserialize(d)?;
        let mut log = WrittenLog::default();
        for c in list {
            let digest = blake3::Hash::from_hex(&c.blake3).map_err(serde::de::Error::custom)?;
            log.push(&c.array, &c.coords, &digest, c.bytes, c.stored);
        }
        Ok(log)
    }
}

/// Counters of one transaction's chunk writes.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct WriteStats {
    /// Chunks whose new bytes equal the stored ones (not rewritten).
    pub chunks_unchanged: u64,
    /// Chunks written as new objects.
    pub chunks_written: u64,
    /// Chunks that referenced an existing identical object.
    pub chunks_deduplicated: u64,
    /// Chunks stored inline.
    pub chunks_inline: u64,
    /// Bytes of new chunk objects.
    pub bytes_written: u64,
    /// Every chunk that changed, with its digest.
    pub written: WrittenLog,
}

impl WriteStats {
    /// The counters alone, without the list of chunks written.
    pub fn counts(&self) -> WriteStats {
        WriteStats {
            written: WrittenLog::default(),
            ..*self
        }
    }
}

/// Shared state of a writing transaction's content-addressed chunk path.
pub struct CasWriter {
    repo: Arc<Repository>,
    base: SnapshotId,
    inline_threshold: usize,
    reachable: OnceCell<HashSet<ChunkId>>,
    created: Mutex<HashSet<ChunkId>>,
    stats: Mutex<WriteStats>,
}

impl CasWriter {
    /// A writer for a transaction whose base snapshot is `base`.
    pub fn new(repo: Arc<Repository>, base: SnapshotId) -> Self {
        let inline_threshold = repo.config().inline_chunk_threshold_bytes() as usize;
        CasWriter {
            repo,
            base,
            inline_threshold,
            reachable: OnceCell::new(),
            created: Mutex::new(HashSet::new()),
            stats: Mutex::new(WriteStats::default()),
        }
    }

    /// The counters so far, without the list of chunks written.
    pub fn counts(&self) -> WriteStats {
        self.stats.lock().map(|s| s.counts()).unwrap_or_default()
    }

    /// The counters and the list of chunks written, leaving both empty.
    pub fn take_stats(&self) -> WriteStats {
        self.stats
            .lock()
            .map(|mut s| std::mem::take(&mut *s))
            .unwrap_or_default()
    }

    fn record(&self, f: impl FnOnce(&mut WriteStats)) {
        if let Ok(mut s) = self.stats.lock() {
            f(&mut s);
        }
    }

    /// Chunk objects reachable from the base snapshot: the only existing objects a new
    /// reference may point at without refreshing them (garbage collection keeps them).
    async fn reachable(&self) -> Result<&HashSet<ChunkId>, String> {
        self.reachable
            .get_or_try_init(|| async {
                let session = snapshot_session(&self.repo, &self.base).await?;
                let ids: HashSet<ChunkId> = session
                    .all_chunks()
                    .await
                    .map_err(|e| e.to_string())?
                    .try_filter_map(|(_, info)| async move {
                        Ok(match info.payload {
                            ChunkPayload::Ref(r) => Some(r.id),
                            _ => None,
                        })
                    })
                    .try_collect()
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(ids)
            })
            .await
    }

    /// Store one encoded chunk content-addressed and point the session at it.
    pub async fn write_chunk(
        &self,
        session: &RwLock<Session>,
        array: Path,
        coords: ChunkIndices,
        bytes: Bytes,
    ) -> Result<(), String> {
        // keep the bytes, not the encoder's buffer: zstd's is sized for the uncompressed chunk
        // (megabytes for a sparse chunk that compresses to a few hundred bytes), and inline
        // payloads live in the session until the commit
        let bytes = Bytes::copy_from_slice(&bytes);
        let digest = blake3::hash(&bytes);
        let existing = session
            .read()
            .await
            .get_chunk_ref(&array, &coords)
            .await
            .map_err(|e| e.to_string())?;
        let len = bytes.len() as u64;
        let path = array.to_string();
        let written =
            |s: &mut WriteStats, stored| s.written.push(&path, &coords.0, &digest, len, stored);
        let payload = if bytes.len() <= self.inline_threshold {
            if matches!(&existing, Some(ChunkPayload::Inline(old)) if *old == bytes) {
                self.record(|s| s.chunks_unchanged += 1);
                return Ok(());
            }
            self.record(|s| {
                s.chunks_inline += 1;
                written(s, StoredAs::Inline);
            });
            ChunkPayload::Inline(bytes)
        } else {
            let id = chunk_id(&digest);
            if matches!(&existing, Some(ChunkPayload::Ref(r)) if r.id == id && r.offset == 0 && r.length == len)
            {
                self.record(|s| s.chunks_unchanged += 1);
                return Ok(());
            }
            let storage = self.repo.storage();
            let ctx = self.repo.storage_context();
            let key = chunk_key(&id);
            let ours = self
                .created
                .lock()
                .map(|c| c.contains(&id))
                .unwrap_or(false);
            let created = if ours {
                // this transaction stored these bytes already: nothing to write
                VersionedUpdateResult::NotOnLatestVersion
            } else {
                storage
                    .put_object(
                        &ctx,
                        &key,
                        bytes.clone(),
                        None,
                        vec![],
                        Some(&VersionInfo::for_creation()),
                    )
                    .await
                    .map_err(|e| format!("writing {key}: {e}"))?
            };
            match created {
                VersionedUpdateResult::Updated { .. } => self.record(|s| {
                    if let Ok(mut c) = self.created.lock() {
                        c.insert(id.clone());
                    }
                    s.chunks_written += 1;
                    s.bytes_written += len;
                    written(s, StoredAs::New);
                }),
                VersionedUpdateResult::NotOnLatestVersion => {
                    if !ours && !self.reachable().await?.contains(&id) {
                        // Stored but not reachable from our base: garbage collection may be about to
                        // delete it. Rewrite the same bytes so its age restarts (spec/004).
                        storage
                            .put_object(&ctx, &key, bytes.clone(), None, vec![], None)
                            .await
                            .map_err(|e| format!("refreshing {key}: {e}"))?;
                    }
                    self.record(|s| {
                        s.chunks_deduplicated += 1;
                        written(s, StoredAs::Deduplicated);
                    })
                }
            }
            ChunkPayload::Ref(ChunkRef {
                id,
                offset: 0,
                length: len,
            })
        };
        session
            .write()
            .await
            .set_chunk_ref(array, coords, Some(payload))
            .await
            .map_err(|e| e.to_string())
    }
}

/// Split a zarr store key into (array path, chunk coordinates) if it names a chunk
/// (default chunk key encoding: `<array>/c/<i>/<j>...`, `<array>/c` for 0-d arrays).
pub fn parse_chunk_key(key: &str) -> Option<(String, Vec<u32>)> {
    if key.ends_with("zarr.json") {
        return None;
    }
    let parts: Vec<&str> = key.split('/').collect();
    let mut end = parts.len();
    while end > 0 && parts[end - 1].parse::<u32>().is_ok() {
        end -= 1;
    }
    if end == 0 || parts[end - 1] != "c" {
        return None;
    }
    let coords = parts[end..].iter().filter_map(|p| p.parse().ok()).collect();
    Some((format!("/{}", parts[..end - 1].join("/")), coords))
}

/// A zarrs store over an icechunk session whose chunk writes go through [`CasWriter`].
pub struct CasStore {
    inner: AsyncIcechunkStore,
    session: Arc<RwLock<Session>>,
    writer: Arc<CasWriter>,
}

impl CasStore {
    /// Wrap `session` (shared with the transaction) and `writer`.
    pub fn new(session: Arc<RwLock<Session>>, writer: Arc<CasWriter>) -> Self {
        CasStore {
            inner: AsyncIcechunkStore::from(Arc::clone(&session)),
            session,
            writer,
        }
    }

    /// The session behind the store.
    pub fn session(&self) -> Arc<RwLock<Session>> {
        Arc::clone(&self.session)
    }
}

#[async_trait]
impl AsyncReadableStorageTraits for CasStore {
    async fn get(&self, key: &StoreKey) -> Result<MaybeBytes, ZStorageError> {
        self.inner.get(key).await
    }

    async fn get_partial_many<'a>(
        &'a self,
        key: &StoreKey,
        byte_ranges: ByteRangeIterator<'a>,
    ) -> Result<AsyncMaybeBytesIterator<'a>, ZStorageError> {
        // zarrs_icechunk reports a chunk that was never written as an error on partial reads;
        // to zarrs it must be absent (the fill value)
        if let Some((array, coords)) = parse_chunk_key(key.as_str()) {
            let path = Path::new(&array).map_err(|e| ZStorageError::Other(e.to_string()))?;
            let r = self
                .session
                .read()
                .await
                .get_chunk_ref(&path, &ChunkIndices(coords))
                .await;
            if matches!(r, Ok(None)) {
                return Ok(None);
            }
        }
        self.inner.get_partial_many(key, byte_ranges).await
    }

    async fn size_key(&self, key: &StoreKey) -> Result<Option<u64>, ZStorageError> {
        self.inner.size_key(key).await
    }

    fn supports_get_partial(&self) -> bool {
        self.inner.supports_get_partial()
    }
}

#[async_trait]
impl AsyncWritableStorageTraits for CasStore {
    async fn set(&self, key: &StoreKey, value: Bytes) -> Result<(), ZStorageError> {
        match parse_chunk_key(key.as_str()) {
            Some((array, coords)) => {
                let path = Path::new(&array).map_err(|e| ZStorageError::Other(e.to_string()))?;
                self.writer
                    .write_chunk(&self.session, path, ChunkIndices(coords), value)
                    .await
                    .map_err(ZStorageError::Other)
            }
            None => {
                // metadata: leave the node untouched when the document is byte-identical
                if self.inner.get(key).await?.as_deref() == Some(&value[..]) {
                    return Ok(());
                }
                self.inner.set(key, value).await
            }
        }
    }

    async fn set_partial_many<'a>(
        &'a self,
        key: &StoreKey,
        offset_values: OffsetBytesIterator<'a>,
    ) -> Result<(), ZStorageError> {
        self.inner.set_partial_many(key, offset_values).await
    }

    async fn erase(&self, key: &StoreKey) -> Result<(), ZStorageError> {
        if let Some((array, coords)) = parse_chunk_key(key.as_str()) {
            // erasing an absent chunk is not a change
            let path = Path::new(&array).map_err(|e| ZStorageError::Other(e.to_string()))?;
            let existing = self
                .session
                .read()
                .await
                .get_chunk_ref(&path, &ChunkIndices(coords))
                .await;
            if matches!(existing, Ok(None)) {
                return Ok(());
            }
        }
        self.inner.erase(key).await
    }

    async fn erase_prefix(&self, prefix: &StorePrefix) -> Result<(), ZStorageError> {
        self.inner.erase_prefix(prefix).await
    }

    fn supports_set_partial(&self) -> bool {
        false
    }
}

#[async_trait]
impl AsyncListableStorageTraits for CasStore {
    async fn list(&self) -> Result<StoreKeys, ZStorageError> {
        self.inner.list().await
    }

    async fn list_prefix(&self, prefix: &StorePrefix) -> Result<StoreKeys, ZStorageError> {
        self.inner.list_prefix(prefix).await
    }

    async fn list_dir(&self, prefix: &StorePrefix) -> Result<StoreKeysPrefixes, ZStorageError> {
        self.inner.list_dir(prefix).await
    }

    async fn size_prefix(&self, prefix: &StorePrefix) -> Result<u64, ZStorageError> {
        self.inner.size_prefix(prefix).await
    }

    async fn size(&self) -> Result<u64, ZStorageError> {
        self.inner.size().await
    }
}

/// A chunk whose stored bytes do not match its address or recorded digest.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct BadChunk {
    /// Array path.
    pub array: String,
    /// Chunk coordinates.
    pub coords: Vec<u32>,
    /// The object key.
    pub object: String,
    /// What is wrong.
    pub problem: String,
}

/// What `verify` found.
#[derive(Clone, Debug, Serialize)]
pub struct VerifyReport {
    /// The snapshot verified.
    pub commit: String,
    /// Content digest recorded in the commit, if any.
    pub recorded_digest: Option<String>,
    /// Content digest recomputed from the stored bytes.
    pub computed_digest: String,
    /// Nodes checked.
    pub nodes: u64,
    /// Chunks checked.
    pub chunks: u64,
    /// Chunk bytes read.
    pub bytes: u64,
    /// Chunks that failed.
    pub bad_chunks: Vec<BadChunk>,
    /// Whether everything matched.
    pub ok: bool,
}

/// A read-only session on snapshot `id`, opened without reading icechunk's `repo` object (which
/// lists every snapshot, so reading it costs O(history)); the snapshot itself is fetched (and
/// cached by the asset manager), so an id that does not exist is an error.
pub async fn snapshot_session(
    repo: &Repository,
    id: &SnapshotId,
) -> Result<icechunk::session::Session, String> {
    repo.asset_manager()
        .fetch_snapshot(id)
        .await
        .map_err(|e| format!("reading commit {id}: {e}"))?;
    let config = repo.config().clone();
    let settings = repo.storage_settings().clone();
    let resolver = Arc::new(icechunk::virtual_chunks::VirtualChunkResolver::new(
        config.virtual_chunk_containers().cloned(),
        std::collections::HashMap::new(),
        settings.clone(),
    ));
    Ok(icechunk::session::Session::create_readonly_session(
        config,
        settings,
        Arc::clone(repo.storage()),
        Arc::clone(repo.asset_manager()),
        resolver,
        id.clone(),
    ))
}

/// Recompute the content digest of `snapshot` from the stored chunk bytes and check every
/// content-addressed chunk against its address. `progress` is called once per chunk.
pub async fn verify(
    repo: &Repository,
    snapshot: &SnapshotId,
    recorded_digest: Option<String>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<VerifyReport, String> {
    let session = snapshot_session(repo, snapshot).await?;
    let storage = repo.storage();
    let ctx = repo.storage_context();
    let mut nodes = BTreeMap::new();
    let mut report = VerifyReport {
        commit: snapshot.to_string(),
        recorded_digest: recorded_digest.clone(),
        computed_digest: String::new(),
        nodes: 0,
        chunks: 0,
        bytes: 0,
        bad_chunks: vec![],
        ok: true,
    };
    for node in list_nodes(&session).await.map_err(|e| e.to_string())? {
        report.nodes += 1;
        let mut h = node_leaf(&node);
        if matches!(node.node_data, NodeData::Array { .. }) {
            let chunks = array_chunks(&session, &node)
                .await
                .map_err(|e| e.to_string())?;
            // fetch the chunk objects a few at a time
            let fetched: Vec<_> =
                futures::stream::iter(chunks.into_iter().map(|(coord, payload)| {
                    let storage = Arc::clone(storage);
                    async move {
                        let data = match &payload {
                            ChunkPayload::Ref(r) => {
                                let key = chunk_key(&r.id);
                                let range = r.offset..r.offset + r.length;
                                let res = async {
                                    let (stream, _) =
                                        storage.get_object_range(&ctx, &key, Some(&range)).await?;
                                    let parts: Vec<Bytes> = stream.try_collect().await?;
                                    Ok::<_, icechunk::StorageError>(parts.concat())
                                }
                                .await;
                                Some(res.map_err(|e| e.to_string()))
                            }
                            _ => None,
                        };
                        (coord, payload, data)
                    }
                }))
                .buffered(16)
                .collect()
                .await;
            for (coord, payload, data) in fetched {
                report.chunks += 1;
                progress(1);
                let leaf = match (&payload, data) {
                    (ChunkPayload::Ref(r), Some(Ok(bytes))) => {
                        report.bytes += bytes.len() as u64;
                        let digest = blake3::hash(&bytes);
                        let intact = bytes.len() as u64 == r.length;
                        if intact && r.offset == 0 && id_matches(&r.id, &digest) {
                            leaf_from_payload(&payload)
                        } else {
                            report.bad_chunks.push(BadChunk {
                                array: node.path.to_string(),
                                coords: coord.0.clone(),
                                object: chunk_key(&r.id),
                                problem: format!(
                                    "stored bytes ({} B, blake3 {}) do not match the chunk's content address \
                                     (corrupted, or written by a tool that does not content-address)",
                                    bytes.len(),
                                    digest.to_hex()
                                ),
                            });
                            // the leaf of what is actually stored
                            let fake = ChunkPayload::Ref(ChunkRef {
                                id: chunk_id(&digest),
                                offset: r.offset,
                                length: bytes.len() as u64,
                            });
                            leaf_from_payload(&fake)
                        }
                    }
                    (ChunkPayload::Ref(r), Some(Err(e))) => {
                        report.bad_chunks.push(BadChunk {
                            array: node.path.to_string(),
                            coords: coord.0.clone(),
                            object: chunk_key(&r.id),
                            problem: format!("cannot read: {e}"),
                        });
                        b"unreadable".to_vec()
                    }
                    _ => leaf_from_payload(&payload),
                };
                h.update(&coord_bytes(&coord));
                h.update(blake3::hash(&leaf).as_bytes());
            }
        }
        nodes.insert(node.path.to_string(), h.finalize());
    }
    report.computed_digest = root_of(nodes);
    report.ok = report.bad_chunks.is_empty()
        && recorded_digest
            .as_deref()
            .is_none_or(|d| d == report.computed_digest);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_log_serializes_as_the_list_of_chunks() {
        let h = |b: &[u8]| blake3::hash(b);
        let mut log = WrittenLog::default();
        log.push("/a/temp", &[0, 3], &h(b"x"), 10, StoredAs::New);
        log.push("/a/time", &[7], &h(b"y"), 11, StoredAs::Inline);
        log.push("/a/temp", &[1, 0], &h(b"z"), 12, StoredAs::Deduplicated);
        let chunk = |array: &str, coords: Vec<u32>, b: &[u8], bytes, stored| WrittenChunk {
            array: array.into(),
            coords,
            blake3: h(b).to_hex().to_string(),
            bytes,
            stored,
        };
        let list = vec![
            chunk("/a/temp", vec![0, 3], b"x", 10, StoredAs::New),
            chunk("/a/time", vec![7], b"y", 11, StoredAs::Inline),
            chunk("/a/temp", vec![1, 0], b"z", 12, StoredAs::Deduplicated),
        ];
        assert_eq!(log.len(), 3);
        assert_eq!(log.arrays.len(), 2, "each array path is kept once");
        let text = serde_json::to_string(&log).unwrap();
        assert_eq!(text, serde_json::to_string(&list).unwrap());
        let back: WrittenLog = serde_json::from_str(&text).unwrap();
        assert_eq!(back, log);
    }

    #[test]
    fn chunk_keys() {
        assert_eq!(
            parse_chunk_key("a/b/c/0/12"),
            Some(("/a/b".into(), vec![0, 12]))
        );
        assert_eq!(parse_chunk_key("x/c"), Some(("/x".into(), vec![])));
        assert_eq!(parse_chunk_key("a/c/c/3"), Some(("/a/c".into(), vec![3])));
        assert_eq!(parse_chunk_key("a/zarr.json"), None);
        assert_eq!(parse_chunk_key("zarr.json"), None);
    }

    #[test]
    fn ids_are_digest_prefixes() {
        let d = blake3::hash(b"hello");
        let id = chunk_id(&d);
        assert!(id_matches(&id, &d));
        assert!(!id_matches(&id, &blake3::hash(b"hellO")));
    }
}
