//! Cutting and measuring text that came from a user (class names, file names, hashes read
//! from files).
//!
//! Such text may hold any Unicode, so it is never sliced by bytes: `&name[..3]` panics inside
//! a multi-byte character (`naïve`). Everything here counts characters (Unicode scalar
//! values), which is also what `format!` padding counts.

/// The first `n` characters of `s` (all of it when shorter).
pub fn prefix(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// The width `format!` padding gives `s`: its number of characters.
pub fn width(s: &str) -> usize {
    s.chars().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_at_characters() {
        assert_eq!(prefix("naïve", 3), "naï");
        assert_eq!(prefix("ab", 3), "ab");
        assert_eq!(prefix("", 3), "");
        assert_eq!(prefix("猫犬鳥魚", 2), "猫犬");
        assert_eq!(prefix("e\u{301}x", 1), "e");
        assert_eq!(width("naïve"), 5);
    }
}
