//! The schema version every JSON document shapelab writes and reads back carries (`model.json`,
//! a dataset's or panel's `spec`, `analysis.json`, `prune.json`, `filters-<split>.json`).
//!
//! A document's type holds a field `schema: Schema<N>`, where `N` is the newest version this
//! build reads and writes. A document written before versioning has no `schema` and is
//! version 1: that is the format those files had, documented here rather than defaulted
//! silently. A version above `N` comes from a newer shapelab and is refused with a message
//! that says so. Must not know what the documents mean.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The schema version of a document whose newest known version is `N`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schema<const N: u32>(u32);

impl<const N: u32> Schema<N> {
    /// The version this build writes.
    pub const CURRENT: Schema<N> = Schema(N);

    /// The version read.
    pub fn version(self) -> u32 {
        self.0
    }
}

impl<const N: u32> Default for Schema<N> {
    /// Documents written before versioning carry no `schema`: they are version 1. Used only
    /// through `#[serde(default)]` on the `schema` field.
    fn default() -> Schema<N> {
        Schema(1)
    }
}

impl<const N: u32> Serialize for Schema<N> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(self.0)
    }
}

impl<'de, const N: u32> Deserialize<'de> for Schema<N> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Schema<N>, D::Error> {
        let v = u32::deserialize(d)?;
        match v {
            0 => Err(serde::de::Error::custom("schema 0 is not a shapelab schema")),
            v if v > N => Err(serde::de::Error::custom(format!(
                "schema {v} was written by a newer shapelab (this one reads up to {N}); upgrade shapelab"
            ))),
            v => Ok(Schema(v)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Doc {
        #[serde(default)]
        schema: Schema<2>,
        x: u8,
    }

    #[test]
    fn versions_are_written_read_and_refused_when_newer() {
        let d = Doc {
            schema: Schema::CURRENT,
            x: 1,
        };
        let text = serde_json::to_string(&d).unwrap();
        assert_eq!(text, r#"{"schema":2,"x":1}"#);
        assert_eq!(serde_json::from_str::<Doc>(&text).unwrap(), d);
        // Written before versioning: version 1.
        let old: Doc = serde_json::from_str(r#"{"x":1}"#).unwrap();
        assert_eq!(old.schema.version(), 1);
        let e = serde_json::from_str::<Doc>(r#"{"schema":3,"x":1}"#)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("schema 3") && e.contains("newer shapelab"),
            "{e}"
        );
        assert!(serde_json::from_str::<Doc>(r#"{"schema":0,"x":1}"#).is_err());
        assert!(serde_json::from_str::<Doc>(r#"{"schema":"1","x":1}"#).is_err());
    }
}
