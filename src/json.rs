//! JSON text of exactly its size: large records (cell sets, a commit's side record) are
//! serialized twice — once counting bytes, once into a buffer of that size — instead of into a
//! buffer that doubles as it grows (up to twice the text, next to everything else an update holds).

use serde::Serialize;

/// Counts the bytes written.
#[derive(Default)]
struct Count(usize);

impl std::io::Write for Count {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0 += b.len();
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `value` as JSON bytes in a buffer of exactly their length.
pub(crate) fn to_vec_exact<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<Vec<u8>> {
    let mut size = Count::default();
    serde_json::to_writer(&mut size, value)?;
    let mut buf = Vec::with_capacity(size.0);
    serde_json::to_writer(&mut buf, value)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    #[test]
    fn exact_size_and_same_text() {
        let v = serde_json::json!({"a": [1, 2.5, "x\"y"], "b": null});
        let buf = super::to_vec_exact(&v).unwrap();
        assert_eq!(buf.len(), buf.capacity());
        assert_eq!(buf, serde_json::to_vec(&v).unwrap());
    }
}
