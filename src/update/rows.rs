//! The typed rows of a converted contribution, block by block. Small contributions stay in
//! memory; once the rows exceed a budget they go to an unnamed temporary file (in `TMPDIR`) and
//! are read back one block — and only the columns a pass needs — at a time, so memory does not
//! grow with the input (spec/017).

use std::fs::File;
use std::io::Write;
use std::ops::ControlFlow;
#[cfg(unix)]
use std::os::unix::fs::FileExt;

use super::values::Values;
use super::UpdateError;

/// Bytes of typed rows kept in memory before they are written to a temporary file.
pub(crate) const SPILL_OVER: usize = 64 << 20;

/// Rows per block in the temporary file.
const BLOCK_ROWS: usize = 1 << 16;

/// Typed rows of one batch: per coordinate a dictionary index per row, per variable a value.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct RowBlock {
    /// Rows in the block.
    pub len: usize,
    /// Per coordinate (schema order): the dictionary index of each row.
    pub idx: Vec<Vec<u32>>,
    /// Per data variable (schema order): the value of each row.
    pub vals: Vec<Values>,
}

impl RowBlock {
    /// An empty block with `coords` coordinates and variables like `vars`.
    pub(crate) fn empty(coords: usize, vars: &[Values]) -> RowBlock {
        RowBlock {
            len: 0,
            idx: vec![vec![]; coords],
            vals: vars.iter().map(Values::empty_like).collect(),
        }
    }

    fn bytes(&self) -> usize {
        self.idx.len() * 4 * self.len + self.vals.iter().map(Values::heap_bytes).sum::<usize>()
    }
}

/// Which columns a pass reads: every coordinate, and the variables marked here (all when `None`).
pub(crate) type VarSelection<'a> = Option<&'a [bool]>;

/// Where a spilled block's columns are in the file.
#[derive(Debug)]
struct Placed {
    len: usize,
    /// (offset, bytes) of each coordinate column, then of each variable column.
    cols: Vec<(u64, usize)>,
}

#[derive(Debug)]
struct Spill {
    file: File,
    end: u64,
    blocks: Vec<Placed>,
}

/// The rows of a contribution, in blocks (in memory or in a temporary file).
#[derive(Debug)]
pub(crate) struct Rows {
    template: RowBlock,
    mem: Vec<RowBlock>,
    mem_bytes: usize,
    spill: Option<Spill>,
    spill_over: usize,
    len: usize,
}

impl Default for Rows {
    fn default() -> Self {
        Rows::new(&RowBlock::default(), usize::MAX)
    }
}

fn spill_error(source: std::io::Error) -> UpdateError {
    UpdateError::Spill {
        dir: std::env::temp_dir(),
        source,
    }
}

impl Rows {
    /// No rows yet, for blocks shaped like `template`; rows beyond `spill_over` bytes go to a
    /// temporary file.
    pub(crate) fn new(template: &RowBlock, spill_over: usize) -> Rows {
        Rows {
            template: RowBlock::empty(template.idx.len(), &template.vals),
            mem: vec![],
            mem_bytes: 0,
            spill: None,
            spill_over,
            len: 0,
        }
    }

    /// All rows in one block in memory.
    pub(crate) fn in_memory(block: RowBlock) -> Rows {
        let mut r = Rows::new(&block, usize::MAX);
        r.len = block.len;
        r.mem_bytes = block.bytes();
        r.mem.push(block);
        r
    }

    /// The budget given to [`Rows::new`].
    pub(crate) fn spill_limit(&self) -> usize {
        self.spill_over
    }

    /// Number of rows.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    #[cfg(test)]
    /// Whether the rows went to a temporary file.
    pub(crate) fn spilled(&self) -> bool {
        self.spill.is_some()
    }

    /// An empty block shaped like these rows.
    pub(crate) fn empty_block(&self) -> RowBlock {
        self.template.clone()
    }

    /// Append a block.
    pub(crate) fn push(&mut self, block: RowBlock) -> Result<(), UpdateError> {
        if block.len == 0 {
            return Ok(());
        }
        self.len += block.len;
        if self.spill.is_none() {
            self.mem_bytes += block.bytes();
            self.mem.push(block);
            if self.mem_bytes > self.spill_over {
                let file = tempfile::tempfile().map_err(spill_error)?;
                self.spill = Some(Spill {
                    file,
                    end: 0,
                    blocks: vec![],
                });
                for b in std::mem::take(&mut self.mem) {
                    self.write(&b)?;
                }
                self.mem_bytes = 0;
            }
            return Ok(());
        }
        self.write(&block)
    }

    /// Write `b` to the file in pieces of at most [`BLOCK_ROWS`] rows (a table given whole
    /// becomes blocks that a pass can read, or skip, one at a time).
    fn write(&mut self, b: &RowBlock) -> Result<(), UpdateError> {
        let Some(spill) = self.spill.as_mut() else {
            return Ok(());
        };
        let mut buf: Vec<u8> = Vec::new();
        for lo in (0..b.len).step_by(BLOCK_ROWS) {
            let hi = (lo + BLOCK_ROWS).min(b.len);
            buf.clear();
            let mut cols = Vec::with_capacity(b.idx.len() + b.vals.len());
            for col in &b.idx {
                let start = buf.len();
                for i in &col[lo..hi] {
                    buf.extend_from_slice(&i.to_le_bytes());
                }
                cols.push((spill.end + start as u64, buf.len() - start));
            }
            for v in &b.vals {
                let start = buf.len();
                v.encode(&mut buf, lo..hi);
                cols.push((spill.end + start as u64, buf.len() - start));
            }
            spill.file.write_all(&buf).map_err(spill_error)?;
            spill.end += buf.len() as u64;
            spill.blocks.push(Placed { len: hi - lo, cols });
        }
        Ok(())
    }

    /// Visit the blocks in row order with the index of their first row. Spilled blocks are read
    /// one at a time with every coordinate and the selected variables (the others are empty).
    pub(crate) fn scan(
        &self,
        vars: VarSelection<'_>,
        f: impl FnMut(usize, &RowBlock) -> Result<(), UpdateError>,
    ) -> Result<(), UpdateError> {
        self.scan_where(vars, &|_| true, f)
    }

    /// [`Rows::scan`] over the blocks whose number (0, 1, … in row order) `wanted` accepts.
    pub(crate) fn scan_where(
        &self,
        vars: VarSelection<'_>,
        wanted: &(dyn Fn(usize) -> bool + Sync),
        mut f: impl FnMut(usize, &RowBlock) -> Result<(), UpdateError>,
    ) -> Result<(), UpdateError> {
        self.scan_until(vars, wanted, |start, b| {
            f(start, b).map(|()| ControlFlow::<std::convert::Infallible>::Continue(()))
        })
        .map(|_| ())
    }

    /// [`Rows::scan_where`] that stops at the first block for which `f` breaks, with its value.
    pub(crate) fn scan_until<B>(
        &self,
        vars: VarSelection<'_>,
        wanted: &(dyn Fn(usize) -> bool + Sync),
        mut f: impl FnMut(usize, &RowBlock) -> Result<ControlFlow<B>, UpdateError>,
    ) -> Result<Option<B>, UpdateError> {
        let Some(spill) = &self.spill else {
            let mut start = 0;
            for (n, b) in self.mem.iter().enumerate() {
                if wanted(n) {
                    if let ControlFlow::Break(v) = f(start, b)? {
                        return Ok(Some(v));
                    }
                }
                start += b.len;
            }
            return Ok(None);
        };
        let n_coords = self.template.idx.len();
        let mut block = self.empty_block();
        let mut buf = Vec::new();
        let mut start = 0;
        for (n, placed) in spill.blocks.iter().enumerate() {
            if !wanted(n) {
                start += placed.len;
                continue;
            }
            block.len = placed.len;
            for (c, &(off, n)) in placed.cols.iter().enumerate() {
                let wanted = c < n_coords || vars.is_none_or(|w| w[c - n_coords]);
                if !wanted {
                    block.vals[c - n_coords] = self.template.vals[c - n_coords].clone();
                    continue;
                }
                buf.resize(n, 0);
                read_at(&spill.file, &mut buf, off)?;
                if c < n_coords {
                    let col = &mut block.idx[c];
                    col.clear();
                    col.extend(
                        buf.chunks_exact(4)
                            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                    );
                } else {
                    block.vals[c - n_coords].decode(&buf, placed.len)?;
                }
            }
            if let ControlFlow::Break(v) = f(start, &block)? {
                return Ok(Some(v));
            }
            start += placed.len;
        }
        Ok(None)
    }

    /// All rows as one block in memory (for passes that need random access to small inputs).
    pub(crate) fn to_block(&self) -> Result<RowBlock, UpdateError> {
        let mut out = self.empty_block();
        self.scan(None, |_, b| {
            out.len += b.len;
            for (o, i) in out.idx.iter_mut().zip(&b.idx) {
                o.extend_from_slice(i);
            }
            for (o, v) in out.vals.iter_mut().zip(&b.vals) {
                o.extend(v);
            }
            Ok(())
        })?;
        Ok(out)
    }
}

#[cfg(unix)]
fn read_at(file: &File, buf: &mut [u8], off: u64) -> Result<(), UpdateError> {
    file.read_exact_at(buf, off).map_err(spill_error)
}

#[cfg(not(unix))]
fn read_at(file: &File, buf: &mut [u8], off: u64) -> Result<(), UpdateError> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = file;
    f.seek(SeekFrom::Start(off)).map_err(spill_error)?;
    f.read_exact(buf).map_err(spill_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(start: u32, n: usize) -> RowBlock {
        RowBlock {
            len: n,
            idx: vec![
                (start..start + n as u32).collect(),
                (0..n as u32).map(|i| i % 3).collect(),
            ],
            vals: vec![
                Values::F(
                    (0..n)
                        .map(|i| if i % 5 == 0 { f64::NAN } else { i as f64 })
                        .collect(),
                ),
                Values::I(
                    (0..n)
                        .map(|i| (i % 4 != 0).then_some(i as i64 - 7))
                        .collect(),
                ),
                Values::S(
                    (0..n)
                        .map(|i| (i % 2 == 0).then(|| format!("s{i}é")))
                        .collect(),
                ),
            ],
        }
    }

    fn summary(rows: &Rows, vars: VarSelection<'_>) -> Vec<(usize, String)> {
        let mut out = vec![];
        rows.scan(vars, |start, b| {
            out.push((start, format!("{:?} {:?} {:?}", b.len, b.idx, b.vals)));
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn spilled_rows_read_back_as_written() {
        let template = block(0, 0);
        let mut mem = Rows::new(&template, usize::MAX);
        let mut disk = Rows::new(&template, 100);
        for (s, n) in [(0, 10), (10, 0), (10, 33), (43, 1), (44, BLOCK_ROWS + 5)] {
            mem.push(block(s, n)).unwrap();
            disk.push(block(s, n)).unwrap();
        }
        assert!(!mem.spilled() && disk.spilled());
        assert_eq!(disk.len(), 49 + BLOCK_ROWS);
        // block by block alike, except the big block, which is two on disk
        assert_eq!(summary(&mem, None)[..3], summary(&disk, None)[..3]);
        // a selection leaves the other variables empty
        let sel = [false, true, false];
        let got = summary(&disk, Some(&sel));
        assert!(got[1].1.contains("F([])") && got[1].1.contains("S([])"));
        // the big block went to the file in two pieces
        assert_eq!(got.len(), 5);
        assert_eq!((got[3].0, got[4].0), (44, 44 + BLOCK_ROWS));
        // (Debug: NaN is not equal to itself)
        assert_eq!(
            format!("{:?}", mem.to_block().unwrap()),
            format!("{:?}", disk.to_block().unwrap())
        );
        assert_eq!(disk.to_block().unwrap().len, 49 + BLOCK_ROWS);
    }
}
