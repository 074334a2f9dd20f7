//! Canonical identities: how principal and approver names are compared.
//!
//! Every name that takes part in an authorization rule (the session's
//! principal, token principals, approvers named in config, policy, webhook
//! answers, the CLI and the `allowed_signers` file) goes through
//! [`Identity::parse`] before it is compared with anything.
//!
//! # The rule
//!
//! 1. Unicode NFKC normalisation (fullwidth `ａｌｉｃｅ` becomes `alice`);
//! 2. removal of every Default_Ignorable_Code_Point (zero-width spaces and
//!    joiners, the soft hyphen, bidi controls, variation selectors, ...);
//! 3. surrounding whitespace trimmed;
//! 4. refused if empty, if it still contains a control character, or if its
//!    letters come from more than one script (UTS #39 single-script check, so
//!    Latin `alice` with a Cyrillic `а` is refused, not compared);
//! 5. compared case-insensitively ([`Identity::key`]).
//!
//! Two further comparisons are deliberately *more* eager to call names the
//! same, because there a false "same" is the safe answer: an approver is
//! never counted as distinct from the requester, nor from another approver
//! of the same quorum, if the two names share a UTS #39 confusable skeleton
//! ([`Identity::same_person`]). Membership of an approver list uses the exact
//! key, where a false "same" would let an outsider in.

use std::fmt;

use unicode_normalization::UnicodeNormalization;
use unicode_security::MixedScript;
use unicode_security::confusable_detection::skeleton;

/// Longest identity accepted, in characters after normalisation. Names are
/// for people and services; anything longer is a mistake or an attack.
pub const MAX_IDENTITY_CHARS: usize = 256;

/// Why a name is not an acceptable identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("the name is empty")]
    Empty,
    #[error("the name is longer than {MAX_IDENTITY_CHARS} characters")]
    TooLong,
    #[error("the name {0:?} contains a control character")]
    Control(String),
    #[error("the name {0:?} mixes letters from several scripts")]
    MixedScripts(String),
}

/// A name in canonical form. Compare with [`Identity::key`] or
/// [`Identity::same_person`], never with the raw text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    /// NFKC, ignorables removed, trimmed; case kept for display.
    display: String,
    /// `display` lower-cased: the comparison key.
    key: String,
}

impl Identity {
    pub fn parse(raw: &str) -> Result<Identity, IdentityError> {
        let display: String = raw
            .nfkc()
            .filter(|c| !is_default_ignorable(*c))
            .collect::<String>()
            .trim()
            .to_string();
        if display.is_empty() {
            return Err(IdentityError::Empty);
        }
        if display.chars().count() > MAX_IDENTITY_CHARS {
            return Err(IdentityError::TooLong);
        }
        if display.chars().any(char::is_control) {
            return Err(IdentityError::Control(display));
        }
        if !display.is_single_script() {
            return Err(IdentityError::MixedScripts(display));
        }
        let key = display.to_lowercase();
        Ok(Identity { display, key })
    }

    /// The name as shown and recorded.
    pub fn as_str(&self) -> &str {
        &self.display
    }

    /// The exact comparison key (case-folded canonical form).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The UTS #39 skeleton of the key: look-alike names share it.
    pub fn skeleton(&self) -> String {
        skeleton(&self.key).collect()
    }

    /// Whether two names could be the same person: equal keys or confusable
    /// skeletons. Used where treating two people as one is the safe error.
    pub fn same_person(&self, other: &Identity) -> bool {
        self.key == other.key || self.skeleton() == other.skeleton()
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display)
    }
}

/// The comparison key of `raw`, or the error that refuses it.
pub fn key(raw: &str) -> Result<String, IdentityError> {
    Identity::parse(raw).map(|i| i.key)
}

/// Unicode's Default_Ignorable_Code_Point property (DerivedCoreProperties.txt,
/// Unicode 15.1). Hand-written because no maintained crate exposes it; the
/// list is short and changes rarely.
fn is_default_ignorable(c: char) -> bool {
    matches!(c as u32,
        0x00AD | 0x034F | 0x061C | 0x115F..=0x1160 | 0x17B4..=0x17B5
        | 0x180B..=0x180F | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x206F
        | 0x3164 | 0xFE00..=0xFE0F | 0xFEFF | 0xFFA0 | 0xFFF0..=0xFFF8
        | 0x1BCA0..=0x1BCA3 | 0x1D173..=0x1D17A | 0xE0000..=0xE0FFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> Identity {
        Identity::parse(s).unwrap()
    }

    #[test]
    fn invisible_and_compatibility_spellings_collapse_to_the_same_key() {
        let alice = id("alice");
        for spelling in [
            "alice\u{200b}",
            "alice\u{00ad}",
            "\u{feff}alice",
            "al\u{200d}ice",
            "ａｌｉｃｅ",
            " Alice ",
            "ALICE",
        ] {
            assert_eq!(id(spelling).key(), alice.key(), "{spelling:?}");
        }
    }

    #[test]
    fn mixed_scripts_and_controls_are_refused() {
        // Cyrillic а (U+0430) in a Latin name; Cyrillic о in "bob".
        assert!(matches!(
            Identity::parse("\u{0430}lice"),
            Err(IdentityError::MixedScripts(_))
        ));
        assert!(matches!(
            Identity::parse("b\u{043e}b"),
            Err(IdentityError::MixedScripts(_))
        ));
        assert!(matches!(
            Identity::parse("ali\u{0007}ce"),
            Err(IdentityError::Control(_))
        ));
        assert_eq!(Identity::parse("\u{200b}"), Err(IdentityError::Empty));
        assert_eq!(
            Identity::parse(&"a".repeat(MAX_IDENTITY_CHARS + 1)),
            Err(IdentityError::TooLong)
        );
    }

    #[test]
    fn ordinary_names_are_accepted() {
        for name in [
            "alice@example.com",
            "Bob Smith",
            "ops-bot_2",
            "Ærøskøbing",
            "山田",
        ] {
            assert!(Identity::parse(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn look_alikes_in_one_script_are_the_same_person() {
        // All-Cyrillic "асе" looks like Latin "ace": single-script each,
        // different keys, same skeleton.
        let latin = id("ace");
        let cyrillic = id("\u{0430}\u{0441}\u{0435}");
        assert_ne!(latin.key(), cyrillic.key());
        assert!(latin.same_person(&cyrillic));
        assert!(!id("alice").same_person(&id("bob")));
    }
}
