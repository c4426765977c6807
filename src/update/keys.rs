//! Lists of coordinate values stored by kind: 8 bytes per number instead of a [`Key`] each
//! (24 bytes), for the dictionaries of a contribution and the merged axes (spec/019).

use std::cmp::Ordering;
use std::hash::{BuildHasher, Hash, Hasher};

use super::{Key, OrdF64};

/// A borrowed coordinate value; compares, orders and hashes like the [`Key`] it stands for.
#[derive(Debug, Clone, Copy)]
pub enum KeyRef<'a> {
    /// Floats (-0.0 stored as 0.0).
    F(f64),
    /// Integers, datetime ticks, composed keys.
    I(i64),
    /// Strings.
    S(&'a str),
}

impl KeyRef<'_> {
    /// The owned key.
    pub fn to_key(self) -> Key {
        match self {
            KeyRef::I(i) => Key::I(i),
            KeyRef::F(f) => Key::F(OrdF64(f)),
            KeyRef::S(s) => Key::S(s.to_string()),
        }
    }
}

impl Key {
    /// This key, borrowed.
    pub fn as_ref(&self) -> KeyRef<'_> {
        match self {
            Key::I(i) => KeyRef::I(*i),
            Key::F(f) => KeyRef::F(f.0),
            Key::S(s) => KeyRef::S(s),
        }
    }
}

impl PartialEq for KeyRef<'_> {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for KeyRef<'_> {}
impl PartialOrd for KeyRef<'_> {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for KeyRef<'_> {
    fn cmp(&self, o: &Self) -> Ordering {
        match (self, o) {
            (KeyRef::I(a), KeyRef::I(b)) => a.cmp(b),
            (KeyRef::F(a), KeyRef::F(b)) => a.total_cmp(b),
            (KeyRef::S(a), KeyRef::S(b)) => a.cmp(b),
            (KeyRef::I(_), _) => Ordering::Less,
            (KeyRef::F(_), KeyRef::I(_)) => Ordering::Greater,
            (KeyRef::F(_), KeyRef::S(_)) => Ordering::Less,
            (KeyRef::S(_), _) => Ordering::Greater,
        }
    }
}
impl Hash for KeyRef<'_> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        match self {
            KeyRef::I(i) => (0u8, i).hash(h),
            KeyRef::F(f) => (1u8, f.to_bits()).hash(h),
            KeyRef::S(s) => (2u8, s).hash(h),
        }
    }
}

/// Coordinate values of one coordinate (one kind); `K` holds a list that mixes kinds, which a
/// coordinate never does, so that nothing is lost if it happens.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Keys {
    /// Floats (-0.0 stored as 0.0).
    F(Vec<f64>),
    /// Integers, ticks, composed keys.
    I(Vec<i64>),
    /// Strings.
    S(Vec<String>),
    /// Mixed kinds.
    K(Vec<Key>),
}

impl Default for Keys {
    fn default() -> Self {
        Keys::I(vec![])
    }
}

impl FromIterator<Key> for Keys {
    fn from_iter<T: IntoIterator<Item = Key>>(iter: T) -> Self {
        let mut out = Keys::default();
        for k in iter {
            out.push(k);
        }
        out
    }
}

impl Keys {
    /// Number of values.
    pub(crate) fn len(&self) -> usize {
        match self {
            Keys::I(v) => v.len(),
            Keys::F(v) => v.len(),
            Keys::S(v) => v.len(),
            Keys::K(v) => v.len(),
        }
    }

    /// Whether there are no values.
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Value `i`, borrowed.
    pub(crate) fn get(&self, i: usize) -> KeyRef<'_> {
        match self {
            Keys::I(v) => KeyRef::I(v[i]),
            Keys::F(v) => KeyRef::F(v[i]),
            Keys::S(v) => KeyRef::S(&v[i]),
            Keys::K(v) => v[i].as_ref(),
        }
    }

    /// Value `i`, owned.
    pub(crate) fn key(&self, i: usize) -> Key {
        self.get(i).to_key()
    }

    /// The values in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = KeyRef<'_>> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }

    /// The first and the last value.
    pub(crate) fn first(&self) -> Option<KeyRef<'_>> {
        (!self.is_empty()).then(|| self.get(0))
    }

    /// The last value.
    pub(crate) fn last(&self) -> Option<KeyRef<'_>> {
        self.len().checked_sub(1).map(|i| self.get(i))
    }

    /// An empty list of the same kind, with room for `n` values.
    pub(crate) fn with_capacity_like(&self, n: usize) -> Keys {
        match self {
            Keys::I(_) => Keys::I(Vec::with_capacity(n)),
            Keys::F(_) => Keys::F(Vec::with_capacity(n)),
            Keys::S(_) => Keys::S(Vec::with_capacity(n)),
            Keys::K(_) => Keys::K(Vec::with_capacity(n)),
        }
    }

    /// Append a value (an empty list takes the value's kind).
    pub(crate) fn push(&mut self, k: Key) {
        match (&mut *self, k) {
            (Keys::I(v), Key::I(x)) => push_slim(v, x),
            (Keys::F(v), Key::F(x)) => push_slim(v, x.0),
            (Keys::S(v), Key::S(x)) => v.push(x),
            (Keys::K(v), k) => v.push(k),
            (me, k) if me.is_empty() => {
                *me = match k {
                    Key::I(x) => Keys::I(vec![x]),
                    Key::F(x) => Keys::F(vec![x.0]),
                    Key::S(x) => Keys::S(vec![x]),
                }
            }
            (me, k) => {
                let mut all: Vec<Key> = me.iter().map(KeyRef::to_key).collect();
                all.push(k);
                *me = Keys::K(all);
            }
        }
    }

    /// Append a borrowed value.
    pub(crate) fn push_ref(&mut self, k: KeyRef<'_>) {
        match (&mut *self, k) {
            (Keys::I(v), KeyRef::I(x)) => push_slim(v, x),
            (Keys::F(v), KeyRef::F(x)) => push_slim(v, x),
            (Keys::S(v), KeyRef::S(x)) => v.push(x.to_string()),
            (_, k) => self.push(k.to_key()),
        }
    }

    /// Whether the values are in strictly increasing order.
    pub(crate) fn is_strictly_sorted(&self) -> bool {
        match self {
            Keys::I(v) => v.windows(2).all(|w| w[0] < w[1]),
            _ => (1..self.len()).all(|i| self.get(i - 1) < self.get(i)),
        }
    }

    /// Binary search in a sorted list.
    pub(crate) fn binary_search(&self, k: KeyRef<'_>) -> Result<usize, usize> {
        match (self, k) {
            (Keys::I(v), KeyRef::I(x)) => v.binary_search(&x),
            _ => {
                let (mut lo, mut hi) = (0, self.len());
                while lo < hi {
                    let mid = lo + (hi - lo) / 2;
                    match self.get(mid).cmp(&k) {
                        Ordering::Less => lo = mid + 1,
                        Ordering::Greater => hi = mid,
                        Ordering::Equal => return Ok(mid),
                    }
                }
                Err(lo)
            }
        }
    }

    /// Give back room reserved beyond the values.
    pub(crate) fn shrink_to_fit(&mut self) {
        match self {
            Keys::I(v) => v.shrink_to_fit(),
            Keys::F(v) => v.shrink_to_fit(),
            Keys::S(v) => v.shrink_to_fit(),
            Keys::K(v) => v.shrink_to_fit(),
        }
    }
}

/// Append growing by half the length instead of doubling: a list of tens of millions of values
/// then holds at most half as much again in slack (numbers reallocate in place on Linux).
fn push_slim<T>(v: &mut Vec<T>, x: T) {
    if v.len() == v.capacity() {
        v.reserve_exact((v.len() / 2).max(16));
    }
    v.push(x);
}

/// Positions in a [`Keys`] found by hash: 4 bytes a value on top of the list (the values are
/// not copied), for unsorted axes and the dictionaries of a contribution.
pub(crate) struct KeyIndex {
    table: hashbrown::HashTable<u32>,
    hasher: std::hash::RandomState,
}

impl Default for KeyIndex {
    fn default() -> Self {
        KeyIndex {
            table: hashbrown::HashTable::new(),
            hasher: std::hash::RandomState::new(),
        }
    }
}

impl KeyIndex {
    /// An index of every value of `keys` (the first position of a repeated value).
    pub(crate) fn of(keys: &Keys) -> KeyIndex {
        let mut ix = KeyIndex::default();
        for i in 0..keys.len() {
            if ix.get(keys, keys.get(i)).is_none() {
                ix.insert(keys, i);
            }
        }
        ix
    }

    /// Position of `k` in `keys` (the list this index was built over).
    pub(crate) fn get(&self, keys: &Keys, k: KeyRef<'_>) -> Option<usize> {
        let hash = self.hasher.hash_one(k);
        self.table
            .find(hash, |&i| keys.get(i as usize) == k)
            .map(|&i| i as usize)
    }

    /// Index value `at` of `keys` (not indexed yet).
    pub(crate) fn insert(&mut self, keys: &Keys, at: usize) {
        let hasher = &self.hasher;
        let hash = hasher.hash_one(keys.get(at));
        self.table
            .insert_unique(hash, at as u32, |&j| hasher.hash_one(keys.get(j as usize)));
    }
}

/// Positions in a dictionary that grows by appending: by binary search while its values came
/// in increasing order (no memory: a time-ordered input), by a [`KeyIndex`] built from the first
/// value that did not (4–8 bytes a value).
#[derive(Default)]
pub(crate) enum DictIndex {
    /// The values are strictly increasing.
    #[default]
    Ascending,
    /// Found by hash.
    Hashed(KeyIndex),
}

impl DictIndex {
    /// Position of `k` in `keys` (the dictionary this index follows).
    pub(crate) fn get(&self, keys: &Keys, k: KeyRef<'_>) -> Option<usize> {
        match self {
            DictIndex::Ascending => {
                let last = keys.len().checked_sub(1)?;
                match keys.get(last).cmp(&k) {
                    Ordering::Equal => Some(last),
                    Ordering::Less => None,
                    Ordering::Greater => keys.binary_search(k).ok(),
                }
            }
            DictIndex::Hashed(ix) => ix.get(keys, k),
        }
    }

    /// Follow `keys` after the value at `at` (its last) was appended; the value must be new.
    pub(crate) fn appended(&mut self, keys: &Keys, at: usize) {
        match self {
            DictIndex::Ascending => {
                if at > 0 && keys.get(at - 1) >= keys.get(at) {
                    *self = DictIndex::Hashed(KeyIndex::of(keys));
                }
            }
            DictIndex::Hashed(ix) => ix.insert(keys, at),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dictionary_index_finds_values_in_and_out_of_order() {
        let mut keys = Keys::default();
        let mut ix = DictIndex::default();
        // ascending first (no hash index), then a value below the last switches to hashing
        let input = [5i64, 5, 7, 9, 7, 5, 12, 3, 9, 3, 20, 1];
        let mut codes = vec![];
        for x in input {
            let k = Key::I(x);
            let i = match ix.get(&keys, k.as_ref()) {
                Some(i) => i,
                None => {
                    keys.push(k);
                    ix.appended(&keys, keys.len() - 1);
                    keys.len() - 1
                }
            };
            if keys.len() <= 4 {
                assert!(matches!(ix, DictIndex::Ascending), "still ascending at {x}");
            }
            codes.push(i);
        }
        assert!(matches!(ix, DictIndex::Hashed(_)));
        assert_eq!(keys, Keys::I(vec![5, 7, 9, 12, 3, 20, 1]));
        assert_eq!(codes, vec![0, 0, 1, 2, 1, 0, 3, 4, 2, 4, 5, 6]);
    }

    #[test]
    fn key_refs_order_and_hash_like_keys() {
        let keys = [
            Key::I(-3),
            Key::I(7),
            Key::f(-0.0),
            Key::f(2.5),
            Key::S("a".into()),
            Key::S("b".into()),
        ];
        let h = std::hash::RandomState::new();
        for a in &keys {
            assert_eq!(h.hash_one(a), h.hash_one(a.as_ref()), "{a:?}");
            for b in &keys {
                assert_eq!(a.cmp(b), a.as_ref().cmp(&b.as_ref()), "{a:?} {b:?}");
            }
        }
    }

    #[test]
    fn keys_keep_values_and_mixed_kinds() {
        let mut k: Keys = [Key::I(3), Key::I(1)].into_iter().collect();
        assert!(matches!(k, Keys::I(_)));
        k.push(Key::S("x".into()));
        assert!(matches!(k, Keys::K(_)));
        assert_eq!(k.key(0), Key::I(3));
        assert_eq!(k.key(2), Key::S("x".into()));
        let s: Keys = ["b", "d", "f"]
            .iter()
            .map(|s| Key::S(s.to_string()))
            .collect();
        assert_eq!(s.binary_search(KeyRef::S("d")), Ok(1));
        assert_eq!(s.binary_search(KeyRef::S("e")), Err(2));
        assert!(s.is_strictly_sorted());
        let ix = KeyIndex::of(&s);
        assert_eq!(ix.get(&s, KeyRef::S("f")), Some(2));
        assert_eq!(ix.get(&s, KeyRef::S("a")), None);
    }
}
