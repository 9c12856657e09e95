//! Key → cluster slot: CRC16/XMODEM of the key (or of its hash tag) modulo 16384, as Redis
//! Cluster computes it. Uses the `crc` crate's `CRC_16_XMODEM` rather than a hand-written table.

/// Number of hash slots in a Redis Cluster.
pub const SLOTS: u16 = 16384;

const CRC16: crc::Crc<u16> = crc::Crc::<u16>::new(&crc::CRC_16_XMODEM);

/// The part of `key` that is hashed: the bytes between the first `{` and the first `}` after
/// it, when that is non-empty; otherwise the whole key. So `{}x` hashes `{}x`, `{{a}}` hashes
/// `{a`, and `a{b}{c}` hashes `b`.
pub fn hash_tag(key: &[u8]) -> &[u8] {
    if let Some(open) = key.iter().position(|&b| b == b'{')
        && let Some(len) = key[open + 1..].iter().position(|&b| b == b'}')
        && len > 0
    {
        return &key[open + 1..open + 1 + len];
    }
    key
}

/// The slot of `key`.
pub fn key_slot(key: &[u8]) -> u16 {
    CRC16.checksum(hash_tag(key)) & (SLOTS - 1)
}

/// A short hash tag for every slot: `slot_tag(s)` is a string whose CRC16 lands in slot `s`,
/// so a key `…{tag}…` lives in that slot. Replay uses it to put one marker key in each slot
/// (a transaction on a cluster may only touch one slot). Found once, by counting upwards in
/// decimal until every slot has its first hit: deterministic, about 160 000 checksums.
pub fn slot_tag(slot: u16) -> &'static str {
    static TAGS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let tags = TAGS.get_or_init(|| {
        let mut tags = vec![String::new(); usize::from(SLOTS)];
        let mut left = tags.len();
        let mut n: u64 = 0;
        while left > 0 {
            let t = n.to_string();
            let s = usize::from(CRC16.checksum(t.as_bytes()) & (SLOTS - 1));
            if tags[s].is_empty() {
                tags[s] = t;
                left -= 1;
            }
            n += 1;
        }
        tags
    });
    &tags[usize::from(slot & (SLOTS - 1))]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_check_value() {
        assert_eq!(CRC16.checksum(b"123456789"), 0x31C3);
    }

    #[test]
    fn tags() {
        assert_eq!(hash_tag(b"{user1000}.following"), b"user1000");
        assert_eq!(hash_tag(b"foo{}{bar}"), b"foo{}{bar}");
        assert_eq!(hash_tag(b"foo{{bar}}zap"), b"{bar");
        assert_eq!(hash_tag(b"foo{bar}{zap}"), b"bar");
        assert_eq!(hash_tag(b"no tag"), b"no tag");
        assert_eq!(key_slot(b"{user1000}.a"), key_slot(b"{user1000}.b"));
    }

    #[test]
    fn known_slots() {
        // Values from `CLUSTER KEYSLOT` on Redis 7.0.
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"bar"), 5061);
        assert_eq!(key_slot(b""), 0);
    }

    #[test]
    fn every_slot_has_a_tag_that_hashes_to_it() {
        for s in 0..SLOTS {
            let key = format!("m:{{{}}}:x", slot_tag(s));
            assert_eq!(key_slot(key.as_bytes()), s, "{key}");
        }
    }
}
