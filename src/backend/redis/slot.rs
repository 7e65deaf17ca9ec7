//! Redis Cluster hash slots: which of the 16 384 slots a key belongs to
//! (CRC16-XMODEM of the key, or of its `{hash tag}`), so batches can be split
//! into one command per slot and reassembled in the caller's order.

/// Slots in a Redis Cluster.
pub(crate) const SLOTS: u16 = 16_384;

/// The hash slot of `key`, as Redis Cluster computes it.
pub(crate) fn slot(key: &[u8]) -> u16 {
    crc16(hash_tag(key)) % SLOTS
}

/// The part of `key` that is hashed: the text between the first `{` and the
/// next `}` when that is not empty, else the whole key.
fn hash_tag(key: &[u8]) -> &[u8] {
    if let Some(open) = key.iter().position(|&b| b == b'{')
        && let Some(len) = key[open + 1..].iter().position(|&b| b == b'}')
        && len > 0
    {
        return &key[open + 1..open + 1 + len];
    }
    key
}

/// CRC16-CCITT (XMODEM): polynomial 0x1021, initial value 0.
fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in bytes {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// Groups the indices of `keys` by slot, keeping each group in input order.
pub(crate) fn group_by_slot<K: AsRef<[u8]>>(keys: &[K]) -> Vec<(u16, Vec<usize>)> {
    let mut groups: Vec<(u16, Vec<usize>)> = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        let s = slot(k.as_ref());
        match groups.iter_mut().find(|(g, _)| *g == s) {
            Some((_, idx)) => idx.push(i),
            None => groups.push((s, vec![i])),
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_redis_cluster() {
        // Values from the Redis Cluster specification and `CLUSTER KEYSLOT`.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"bar"), 5061);
        assert_eq!(slot(b"{user1000}.following"), slot(b"user1000"));
        assert_eq!(slot(b"foo{}{bar}"), slot(b"foo{}{bar}"));
        assert_eq!(hash_tag(b"foo{}{bar}"), b"foo{}{bar}");
        assert_eq!(hash_tag(b"foo{{bar}}zap"), b"{bar");
        assert_eq!(hash_tag(b"foo{bar}{zap}"), b"bar");
    }

    #[test]
    fn groups_keep_input_order() {
        let keys = ["a{x}", "b", "c{x}", "d"];
        let groups = group_by_slot(&keys);
        let x = groups.iter().find(|(s, _)| *s == slot(b"x")).unwrap();
        assert_eq!(x.1, vec![0, 2]);
        assert_eq!(groups.iter().map(|(_, v)| v.len()).sum::<usize>(), 4);
    }
}
