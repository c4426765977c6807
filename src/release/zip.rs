//! A minimal, deterministic ZIP archive of *stored* (uncompressed) entries, with ZIP64 where
//! sizes, offsets or counts need it (spec/015-release.md).
//!
//! Chunks are already compressed by their Zarr codecs, so storing them keeps the archive
//! streamable: every local header is written with its CRC and sizes known up front, the output
//! is written strictly sequentially (no seeking back), and the same entries in the same order
//! give the same bytes. Reading checks the structure and each entry's CRC-32, and names the
//! entry at fault.

use std::io::{Read, Seek, SeekFrom, Write};

const LOCAL_SIG: u32 = 0x0403_4b50;
const CENTRAL_SIG: u32 = 0x0201_4b50;
const EOCD_SIG: u32 = 0x0605_4b50;
const EOCD64_SIG: u32 = 0x0606_4b50;
const EOCD64_LOC_SIG: u32 = 0x0706_4b50;
/// MS-DOS time and date of every entry: 1980-01-01 00:00 (deterministic archives).
const DOS_TIME: u16 = 0;
const DOS_DATE: u16 = (1 << 5) | 1;
/// General purpose flag: names are UTF-8.
const FLAG_UTF8: u16 = 1 << 11;
const U32_MAX: u64 = 0xFFFF_FFFF;

/// Problems reading an archive.
#[derive(Debug, thiserror::Error)]
pub enum ZipError {
    /// Reading failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The archive is damaged or not one of ours.
    #[error("{0}")]
    Format(String),
}

/// One entry in the central directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Name inside the archive.
    pub name: String,
    /// CRC-32 of the data.
    pub crc32: u32,
    /// Size of the data (stored: compressed = uncompressed).
    pub size: u64,
    /// Offset of the local header.
    pub header_offset: u64,
}

/// Writes entries sequentially to `W`.
pub struct ZipWriter<W: Write> {
    out: W,
    offset: u64,
    entries: Vec<Entry>,
}

impl<W: Write> ZipWriter<W> {
    /// An archive written to `out`.
    pub fn new(out: W) -> Self {
        ZipWriter {
            out,
            offset: 0,
            entries: Vec::new(),
        }
    }

    /// The writer underneath.
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.out
    }

    /// Bytes written so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    fn put(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.out.write_all(b)?;
        self.offset += b.len() as u64;
        Ok(())
    }

    /// Append one stored entry whose CRC-32 is already known.
    pub fn add(&mut self, name: &str, data: &[u8], crc32: u32) -> std::io::Result<()> {
        let size = data.len() as u64;
        let header_offset = self.offset;
        let big = size >= U32_MAX;
        let mut h = Vec::with_capacity(30 + name.len() + 20);
        h.extend_from_slice(&LOCAL_SIG.to_le_bytes());
        h.extend_from_slice(&(if big { 45u16 } else { 20u16 }).to_le_bytes());
        h.extend_from_slice(&FLAG_UTF8.to_le_bytes());
        h.extend_from_slice(&0u16.to_le_bytes()); // stored
        h.extend_from_slice(&DOS_TIME.to_le_bytes());
        h.extend_from_slice(&DOS_DATE.to_le_bytes());
        h.extend_from_slice(&crc32.to_le_bytes());
        let s32 = if big { u32::MAX } else { size as u32 };
        h.extend_from_slice(&s32.to_le_bytes());
        h.extend_from_slice(&s32.to_le_bytes());
        h.extend_from_slice(&(name.len() as u16).to_le_bytes());
        h.extend_from_slice(&(if big { 20u16 } else { 0 }).to_le_bytes());
        h.extend_from_slice(name.as_bytes());
        if big {
            h.extend_from_slice(&1u16.to_le_bytes());
            h.extend_from_slice(&16u16.to_le_bytes());
            h.extend_from_slice(&size.to_le_bytes());
            h.extend_from_slice(&size.to_le_bytes());
        }
        self.put(&h)?;
        self.put(data)?;
        self.entries.push(Entry {
            name: name.to_string(),
            crc32,
            size,
            header_offset,
        });
        Ok(())
    }

    /// Write the central directory and end records; returns the inner writer.
    pub fn finish(mut self) -> std::io::Result<W> {
        let cd_start = self.offset;
        let entries = std::mem::take(&mut self.entries);
        for e in &entries {
            let mut extra = Vec::new();
            let big_size = e.size >= U32_MAX;
            let big_off = e.header_offset >= U32_MAX;
            if big_size {
                extra.extend_from_slice(&e.size.to_le_bytes());
                extra.extend_from_slice(&e.size.to_le_bytes());
            }
            if big_off {
                extra.extend_from_slice(&e.header_offset.to_le_bytes());
            }
            let mut h = Vec::with_capacity(46 + e.name.len() + 4 + extra.len());
            let version: u16 = if big_size || big_off { 45 } else { 20 };
            h.extend_from_slice(&CENTRAL_SIG.to_le_bytes());
            h.extend_from_slice(&(version | (3 << 8)).to_le_bytes()); // made by: unix
            h.extend_from_slice(&version.to_le_bytes());
            h.extend_from_slice(&FLAG_UTF8.to_le_bytes());
            h.extend_from_slice(&0u16.to_le_bytes());
            h.extend_from_slice(&DOS_TIME.to_le_bytes());
            h.extend_from_slice(&DOS_DATE.to_le_bytes());
            h.extend_from_slice(&e.crc32.to_le_bytes());
            let s32 = if big_size { u32::MAX } else { e.size as u32 };
            h.extend_from_slice(&s32.to_le_bytes());
            h.extend_from_slice(&s32.to_le_bytes());
            h.extend_from_slice(&(e.name.len() as u16).to_le_bytes());
            let extra_len = if extra.is_empty() { 0 } else { 4 + extra.len() };
            h.extend_from_slice(&(extra_len as u16).to_le_bytes());
            h.extend_from_slice(&0u16.to_le_bytes()); // comment
            h.extend_from_slice(&0u16.to_le_bytes()); // disk
            h.extend_from_slice(&0u16.to_le_bytes()); // internal attributes
            h.extend_from_slice(&(0o100644u32 << 16).to_le_bytes()); // -rw-r--r--
            let o32 = if big_off {
                u32::MAX
            } else {
                e.header_offset as u32
            };
            h.extend_from_slice(&o32.to_le_bytes());
            h.extend_from_slice(e.name.as_bytes());
            if !extra.is_empty() {
                h.extend_from_slice(&1u16.to_le_bytes());
                h.extend_from_slice(&(extra.len() as u16).to_le_bytes());
                h.extend_from_slice(&extra);
            }
            self.put(&h)?;
        }
        let cd_size = self.offset - cd_start;
        let n = entries.len() as u64;
        let zip64 = n >= 0xFFFF || cd_start >= U32_MAX || cd_size >= U32_MAX;
        if zip64 {
            let eocd64 = self.offset;
            let mut h = Vec::with_capacity(56 + 20);
            h.extend_from_slice(&EOCD64_SIG.to_le_bytes());
            h.extend_from_slice(&44u64.to_le_bytes());
            h.extend_from_slice(&(45u16 | (3 << 8)).to_le_bytes());
            h.extend_from_slice(&45u16.to_le_bytes());
            h.extend_from_slice(&0u32.to_le_bytes());
            h.extend_from_slice(&0u32.to_le_bytes());
            h.extend_from_slice(&n.to_le_bytes());
            h.extend_from_slice(&n.to_le_bytes());
            h.extend_from_slice(&cd_size.to_le_bytes());
            h.extend_from_slice(&cd_start.to_le_bytes());
            h.extend_from_slice(&EOCD64_LOC_SIG.to_le_bytes());
            h.extend_from_slice(&0u32.to_le_bytes());
            h.extend_from_slice(&eocd64.to_le_bytes());
            h.extend_from_slice(&1u32.to_le_bytes());
            self.put(&h)?;
        }
        let mut h = Vec::with_capacity(22);
        h.extend_from_slice(&EOCD_SIG.to_le_bytes());
        h.extend_from_slice(&0u16.to_le_bytes());
        h.extend_from_slice(&0u16.to_le_bytes());
        let n16 = if zip64 { 0xFFFF } else { n as u16 };
        h.extend_from_slice(&n16.to_le_bytes());
        h.extend_from_slice(&n16.to_le_bytes());
        let clamp = |v: u64| if zip64 { u32::MAX } else { v as u32 };
        h.extend_from_slice(&clamp(cd_size).to_le_bytes());
        h.extend_from_slice(&clamp(cd_start).to_le_bytes());
        h.extend_from_slice(&0u16.to_le_bytes());
        self.put(&h)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([b[i], b[i + 1]])
}
fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}
fn u64_at(b: &[u8], i: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[i..i + 8]);
    u64::from_le_bytes(a)
}

/// Reads an archive of stored entries.
pub struct ZipReader<R: Read + Seek> {
    inner: R,
    len: u64,
    entries: Vec<Entry>,
}

fn bad(msg: impl Into<String>) -> ZipError {
    ZipError::Format(msg.into())
}

impl<R: Read + Seek> ZipReader<R> {
    /// Parse the central directory of `inner`.
    pub fn open(mut inner: R) -> Result<Self, ZipError> {
        let len = inner.seek(SeekFrom::End(0))?;
        let tail_len = len.min(22 + 0xFFFF);
        inner.seek(SeekFrom::Start(len - tail_len))?;
        let mut tail = vec![0u8; tail_len as usize];
        inner.read_exact(&mut tail)?;
        let eocd = (0..tail.len().saturating_sub(21))
            .rev()
            .find(|&i| u32_at(&tail, i) == EOCD_SIG)
            .ok_or_else(|| {
                bad("no end-of-central-directory record: the archive is truncated or not a ZIP file")
            })?;
        let e = &tail[eocd..];
        let mut n = u64::from(u16_at(e, 10));
        let mut cd_size = u64::from(u32_at(e, 12));
        let mut cd_start = u64::from(u32_at(e, 16));
        let eocd_abs = len - tail_len + eocd as u64;
        if n == 0xFFFF || cd_size == U32_MAX || cd_start == U32_MAX {
            if eocd_abs < 20 {
                return Err(bad("ZIP64 locator missing"));
            }
            inner.seek(SeekFrom::Start(eocd_abs - 20))?;
            let mut loc = [0u8; 20];
            inner.read_exact(&mut loc)?;
            if u32_at(&loc, 0) != EOCD64_LOC_SIG {
                return Err(bad("ZIP64 locator missing"));
            }
            let at = u64_at(&loc, 8);
            if at.checked_add(56).is_none_or(|end| end > len) {
                return Err(bad("ZIP64 end record lies beyond the end of the file"));
            }
            inner.seek(SeekFrom::Start(at))?;
            let mut r = [0u8; 56];
            inner.read_exact(&mut r)?;
            if u32_at(&r, 0) != EOCD64_SIG {
                return Err(bad("ZIP64 end record damaged"));
            }
            n = u64_at(&r, 32);
            cd_size = u64_at(&r, 40);
            cd_start = u64_at(&r, 48);
        }
        if cd_start.checked_add(cd_size).is_none_or(|end| end > len) {
            return Err(bad(format!(
                "the central directory ({cd_size} B at offset {cd_start}) lies beyond the end of the file ({len} B): truncated"
            )));
        }
        if cd_size > 1 << 34 {
            return Err(bad("central directory implausibly large"));
        }
        inner.seek(SeekFrom::Start(cd_start))?;
        let mut cd = vec![0u8; cd_size as usize];
        inner.read_exact(&mut cd)?;
        let mut entries = Vec::with_capacity(n.min(1 << 20) as usize);
        let mut i = 0usize;
        for k in 0..n {
            if i + 46 > cd.len() || u32_at(&cd, i) != CENTRAL_SIG {
                return Err(bad(format!("central directory entry {k} damaged")));
            }
            let flags = u16_at(&cd, i + 8);
            let method = u16_at(&cd, i + 10);
            let crc32 = u32_at(&cd, i + 16);
            let csize = u64::from(u32_at(&cd, i + 20));
            let usize_ = u64::from(u32_at(&cd, i + 24));
            let name_len = usize::from(u16_at(&cd, i + 28));
            let extra_len = usize::from(u16_at(&cd, i + 30));
            let comment_len = usize::from(u16_at(&cd, i + 32));
            let mut header_offset = u64::from(u32_at(&cd, i + 42));
            let end = i + 46 + name_len + extra_len + comment_len;
            if end > cd.len() {
                return Err(bad(format!("central directory entry {k} damaged")));
            }
            let name = String::from_utf8(cd[i + 46..i + 46 + name_len].to_vec())
                .map_err(|_| bad(format!("entry {k}: name is not UTF-8")))?;
            if method != 0 || flags & 1 != 0 {
                return Err(bad(format!(
                    "entry '{name}' is compressed or encrypted (method {method}); release packages store entries uncompressed"
                )));
            }
            let mut size = usize_;
            let (mut need_size, mut need_csize, mut need_off) = (
                usize_ == U32_MAX,
                csize == U32_MAX,
                header_offset == U32_MAX,
            );
            let mut x = i + 46 + name_len;
            let xend = x + extra_len;
            while x + 4 <= xend {
                let id = u16_at(&cd, x);
                let l = usize::from(u16_at(&cd, x + 2));
                let mut p = x + 4;
                if id == 1 {
                    for (need, slot) in [
                        (&mut need_size, Some(&mut size)),
                        (&mut need_csize, None),
                        (&mut need_off, Some(&mut header_offset)),
                    ] {
                        if *need && p + 8 <= (x + 4 + l).min(xend) {
                            if let Some(s) = slot {
                                *s = u64_at(&cd, p);
                            }
                            *need = false;
                            p += 8;
                        }
                    }
                }
                x += 4 + l;
            }
            if need_size || need_off {
                return Err(bad(format!("entry '{name}': ZIP64 sizes missing")));
            }
            if csize != U32_MAX && csize != size {
                return Err(bad(format!(
                    "entry '{name}': stored and original sizes differ"
                )));
            }
            entries.push(Entry {
                name,
                crc32,
                size,
                header_offset,
            });
            i = end;
        }
        Ok(ZipReader {
            inner,
            len,
            entries,
        })
    }

    /// The entries, in archive order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Read entry `e` and check its CRC-32.
    pub fn read(&mut self, e: &Entry) -> Result<Vec<u8>, ZipError> {
        if e.header_offset
            .checked_add(30)
            .is_none_or(|end| end > self.len)
        {
            return Err(bad(format!(
                "entry '{}': local header beyond the end of the file (truncated)",
                e.name
            )));
        }
        self.inner.seek(SeekFrom::Start(e.header_offset))?;
        let mut h = [0u8; 30];
        self.inner.read_exact(&mut h)?;
        if u32_at(&h, 0) != LOCAL_SIG {
            return Err(bad(format!("entry '{}': local header damaged", e.name)));
        }
        let name_len = u64::from(u16_at(&h, 26));
        let extra_len = u64::from(u16_at(&h, 28));
        let start = e.header_offset + 30 + name_len + extra_len;
        if start.checked_add(e.size).is_none_or(|end| end > self.len) {
            return Err(bad(format!(
                "entry '{}': data runs past the end of the file (truncated)",
                e.name
            )));
        }
        let mut name = vec![0u8; name_len as usize];
        self.inner.read_exact(&mut name)?;
        if name != e.name.as_bytes() {
            return Err(bad(format!(
                "entry '{}': local header names '{}'",
                e.name,
                String::from_utf8_lossy(&name)
            )));
        }
        self.inner.seek(SeekFrom::Start(start))?;
        let mut data = vec![0u8; e.size as usize];
        self.inner.read_exact(&mut data)?;
        let crc = crc32fast::hash(&data);
        if crc != e.crc32 {
            return Err(bad(format!(
                "entry '{}': CRC-32 {crc:08x} does not match the recorded {:08x} (modified bytes)",
                e.name, e.crc32
            )));
        }
        Ok(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn archive(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = ZipWriter::new(Vec::new());
        for (n, d) in entries {
            w.add(n, d, crc32fast::hash(d)).unwrap();
        }
        w.finish().unwrap()
    }

    #[test]
    fn round_trip_and_determinism() {
        let e: [(&str, &[u8]); 3] = [("zarr.json", b"{}"), ("a/c/0", b"xyz"), ("empty", b"")];
        let a = archive(&e);
        assert_eq!(a, archive(&e));
        let mut r = ZipReader::open(Cursor::new(a)).unwrap();
        let entries = r.entries().to_vec();
        assert_eq!(entries.len(), 3);
        for (got, (n, d)) in entries.iter().zip(e) {
            assert_eq!(got.name, n);
            assert_eq!(r.read(got).unwrap(), d);
        }
    }

    #[test]
    fn damage_is_named() {
        let mut a = archive(&[("zarr.json", b"{}"), ("v/c/0", b"payload")]);
        let at = a.windows(7).position(|w| w == b"payload").unwrap();
        a[at + 2] ^= 1;
        let mut r = ZipReader::open(Cursor::new(a.clone())).unwrap();
        let e = r.entries()[1].clone();
        let err = r.read(&e).unwrap_err().to_string();
        assert!(err.contains("v/c/0") && err.contains("CRC"), "{err}");
        let cut = a[..a.len() - 10].to_vec();
        assert!(ZipReader::open(Cursor::new(cut)).is_err());
        let cut = a[..at].to_vec();
        assert!(ZipReader::open(Cursor::new(cut)).is_err());
    }

    #[test]
    fn damaged_archives_never_panic() {
        let a = archive(&[
            ("zarr.json", b"{\"a\": 1}"),
            ("v/c/0", &[7u8; 300]),
            ("v/c/1", b""),
        ]);
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..20_000 {
            let mut b = a.clone();
            for _ in 0..(next() % 4 + 1) {
                let i = (next() as usize) % b.len();
                b[i] = next() as u8;
            }
            if next() % 5 == 0 {
                let cut = (next() as usize) % b.len();
                b.truncate(cut);
            }
            if let Ok(mut r) = ZipReader::open(Cursor::new(b)) {
                for e in r.entries().to_vec() {
                    let _ = r.read(&e);
                }
            }
        }
    }

    #[test]
    fn zip64_end_records_when_many_entries() {
        let names: Vec<String> = (0..70_000).map(|i| format!("c/{i}")).collect();
        let mut w = ZipWriter::new(Vec::new());
        for n in &names {
            w.add(n, b"", 0).unwrap();
        }
        let a = w.finish().unwrap();
        let r = ZipReader::open(Cursor::new(a)).unwrap();
        assert_eq!(r.entries().len(), 70_000);
        assert_eq!(r.entries()[69_999].name, "c/69999");
    }
}
