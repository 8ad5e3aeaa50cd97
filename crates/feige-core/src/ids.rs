//! Identifier newtypes with parse constructors: a value of these types is always valid.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Largest integer a JSON client can hold exactly (2^53 − 1).
pub const MAX_JSON_INT: i64 = (1 << 53) - 1;

macro_rules! int_id {
    ($name:ident, $what:literal) => {
        #[doc = concat!("A ", $what, " id: a positive JSON-safe integer.")]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl $name {
            /// Parses an id from a path segment or string.
            pub fn parse(s: &str) -> Result<Self> {
                s.parse::<i64>()
                    .ok()
                    .filter(|v| *v > 0 && *v <= MAX_JSON_INT)
                    .map($name)
                    .ok_or_else(|| Error::bad_request("invalid_id", concat!("not a valid ", $what, " id")))
            }
            pub fn get(self) -> i64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

int_id!(UserId, "user");
int_id!(GroupId, "group");

/// A conversation: either the one-to-one conversation of two users, or a group's.
///
/// On the wire it is an opaque URL-safe string (`p<low>_<high>` or `g<group>`); clients only
/// echo it back. The pair form is canonical (lower id first), so both sides name it alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConversationId {
    Direct(UserId, UserId),
    Group(GroupId),
}

impl ConversationId {
    /// The one-to-one conversation of `a` and `b`, in canonical order.
    pub fn direct(a: UserId, b: UserId) -> Self {
        if a <= b { ConversationId::Direct(a, b) } else { ConversationId::Direct(b, a) }
    }

    /// Parses the wire form; anything else is `404 conversation_not_found`, since a client can
    /// only have got a valid id from us.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = || Error::not_found("conversation_not_found", "no such conversation");
        if let Some(rest) = s.strip_prefix('p') {
            let (a, b) = rest.split_once('_').ok_or_else(bad)?;
            let (a, b) = (UserId::parse(a).map_err(|_| bad())?, UserId::parse(b).map_err(|_| bad())?);
            if a >= b {
                return Err(bad());
            }
            Ok(ConversationId::Direct(a, b))
        } else if let Some(rest) = s.strip_prefix('g') {
            Ok(ConversationId::Group(GroupId::parse(rest).map_err(|_| bad())?))
        } else {
            Err(bad())
        }
    }

    /// "direct" or "group", as in the conversation list's `kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            ConversationId::Direct(..) => "direct",
            ConversationId::Group(_) => "group",
        }
    }

    /// For a direct conversation, the other party as seen by `me`.
    pub fn peer_of(&self, me: UserId) -> Option<UserId> {
        match *self {
            ConversationId::Direct(a, b) if a == me => Some(b),
            ConversationId::Direct(a, b) if b == me => Some(a),
            _ => None,
        }
    }
}

impl fmt::Display for ConversationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConversationId::Direct(a, b) => write!(f, "p{a}_{b}"),
            ConversationId::Group(g) => write!(f, "g{g}"),
        }
    }
}

impl Serialize for ConversationId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ConversationId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ConversationId::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_must_be_positive_and_json_safe() {
        assert_eq!(UserId::parse("42").ok(), Some(UserId(42)));
        for bad in ["0", "-1", "abc", "", "9007199254740992", "1.5"] {
            assert!(UserId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn direct_conversation_ids_are_canonical_and_round_trip() {
        let c = ConversationId::direct(UserId(9), UserId(3));
        assert_eq!(c.to_string(), "p3_9");
        assert_eq!(ConversationId::parse("p3_9").ok(), Some(c));
        assert_eq!(c.peer_of(UserId(3)), Some(UserId(9)));
        assert_eq!(c.peer_of(UserId(4)), None);
        let g = ConversationId::Group(GroupId(7));
        assert_eq!(ConversationId::parse(&g.to_string()).ok(), Some(g));
        for bad in ["p9_3", "p3_3", "p3", "x1", "g0", "p3_9_1", "", "g"] {
            assert!(ConversationId::parse(bad).is_err(), "{bad}");
        }
    }
}
