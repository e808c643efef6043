//! Minimisation: a JSON response is cut down to the fields the granted scopes name
//! (RFC 6901 JSON pointers); everything else is removed. The result keeps the shape of
//! the original: objects keep only the named members, arrays keep their length with
//! unnamed elements replaced by `null` (so indexes keep their meaning).

use serde_json::{Map, Value};

/// Decodes one reference token (`~1` → `/`, `~0` → `~`).
fn token(t: &str) -> String {
    t.replace("~1", "/").replace("~0", "~")
}

/// Splits pointers into token paths; the empty pointer (whole document) is `[]`.
fn paths(pointers: &[String]) -> Vec<Vec<String>> {
    pointers
        .iter()
        .map(|p| {
            if p.is_empty() {
                Vec::new()
            } else {
                p.split('/').skip(1).map(token).collect()
            }
        })
        .collect()
}

fn keep(value: &Value, paths: &[&[String]]) -> Option<Value> {
    if paths.iter().any(|p| p.is_empty()) {
        return Some(value.clone());
    }
    match value {
        Value::Object(members) => {
            let mut out = Map::new();
            for (k, v) in members {
                let rest: Vec<&[String]> = paths
                    .iter()
                    .filter(|p| p[0] == *k)
                    .map(|p| &p[1..])
                    .collect();
                if rest.is_empty() {
                    continue;
                }
                if let Some(kept) = keep(v, &rest) {
                    out.insert(k.clone(), kept);
                }
            }
            Some(Value::Object(out))
        }
        Value::Array(items) => {
            let mut any = false;
            let out = items
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let idx = i.to_string();
                    let rest: Vec<&[String]> = paths
                        .iter()
                        .filter(|p| p[0] == idx)
                        .map(|p| &p[1..])
                        .collect();
                    if rest.is_empty() {
                        Value::Null
                    } else {
                        any = true;
                        keep(v, &rest).unwrap_or(Value::Null)
                    }
                })
                .collect();
            any.then_some(Value::Array(out))
        }
        // A pointer going through a scalar names nothing.
        _ => None,
    }
}

/// The document reduced to `pointers`. A document that is not an object or array
/// and is not granted whole gives an empty object.
pub fn minimise(document: &Value, pointers: &[String]) -> Value {
    let paths = paths(pointers);
    let refs: Vec<&[String]> = paths.iter().map(Vec::as_slice).collect();
    match keep(document, &refs) {
        Some(v) => v,
        None => Value::Object(Map::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn keeps_only_named_fields() {
        let doc = json!({"quotientFamilial": 640, "allocataires": [{"nom": "Dupont"}],
            "enfants": [], "internal": {"score": 3}, "a/b": 1, "m~n": 2});
        assert_eq!(
            minimise(&doc, &p(&["/quotientFamilial"])),
            json!({"quotientFamilial": 640})
        );
        assert_eq!(
            minimise(&doc, &p(&["/allocataires", "/enfants", "/a~1b", "/m~0n"])),
            json!({"allocataires": [{"nom": "Dupont"}], "enfants": [], "a/b": 1, "m~n": 2})
        );
        assert_eq!(minimise(&doc, &p(&[""])), doc);
        assert_eq!(minimise(&doc, &p(&[])), json!({}));
        assert_eq!(minimise(&doc, &p(&["/absent"])), json!({}));
    }

    #[test]
    fn nested_objects_and_arrays() {
        let doc = json!({"foyer": {"rfr": 31000, "adresse": "1 rue X", "parts": 2.5},
            "enfants": [{"prenom": "A", "nir": "1"}, {"prenom": "B", "nir": "2"}]});
        assert_eq!(
            minimise(&doc, &p(&["/foyer/rfr", "/enfants/1/prenom"])),
            json!({"foyer": {"rfr": 31000}, "enfants": [null, {"prenom": "B"}]})
        );
        // A pointer through a scalar keeps nothing of it.
        assert_eq!(minimise(&doc, &p(&["/foyer/rfr/x"])), json!({"foyer": {}}));
    }
}
