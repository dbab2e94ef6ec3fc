//! Rule chains in ThingsBoard's JSON (`RuleChain`, `RuleChainMetaData`) and back: one format on
//! disk (the chain's TOML and its `.rhai` files), one in the API. Scripts travel as `rhaiScript`
//! text in a node's configuration, beside `scriptFile`, the file they are kept in.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;

use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::chain::Chain;
use super::debug::DebugRegistry;
use super::loader::{ChainDoc, NodeDoc, RelationDoc, node_id};
use super::nodes::Kind;

/// The configuration key of a node's script file in the chain TOML.
const SCRIPT_KEY: &str = "script";
/// Configuration keys of the JSON form that are not written to the TOML as they are.
const JSON_ONLY: [&str; 6] = [
    "scriptLang",
    "rhaiScript",
    "scriptFile",
    "jsScript",
    "tbelScript",
    "version",
];

fn entity(kind: &str, id: Uuid) -> Value {
    json!({"entityType": kind, "id": id.to_string()})
}

/// Optimistic-lock version of a chain: a checksum of its file (changes whenever the file does).
pub fn version(chain: &Chain) -> i64 {
    let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);
    i64::from(crc.checksum(chain.text.as_bytes()))
}

/// `RuleChain`.
pub fn rule_chain(chain: &Chain, tenant: Uuid) -> Value {
    let first = chain
        .slots
        .get(chain.entry)
        .map(|s| entity("RULE_NODE", s.uuid));
    json!({
        "id": entity("RULE_CHAIN", chain.id),
        "createdTime": 0,
        "tenantId": entity("TENANT", tenant),
        "name": chain.name,
        "type": "CORE",
        "firstRuleNodeId": first,
        "root": chain.root,
        "debugMode": false,
        "configuration": null,
        "additionalInfo": {
            "description": chain.doc.description.clone().unwrap_or_default(),
            "file": chain.file,
        },
        "externalId": null,
        "version": version(chain),
    })
}

/// `RuleChainMetaData`: nodes in file order, connections by index, scripts inline.
pub fn metadata(chain: &Chain, scripts: &BTreeMap<String, String>, debug: &DebugRegistry) -> Value {
    let chain_ref = entity("RULE_CHAIN", chain.id);
    let index: HashMap<&str, usize> = chain
        .doc
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.id.as_str(), i))
        .collect();
    let nodes: Vec<Value> = chain
        .doc
        .nodes
        .iter()
        .map(|n| node_json(chain, n, &chain_ref, scripts, debug))
        .collect();
    let connections: Vec<Value> = chain
        .doc
        .relations
        .iter()
        .filter_map(|r| {
            Some(json!({
                "fromIndex": index.get(r.from.as_str())?,
                "toIndex": index.get(r.to.as_str())?,
                "type": r.relation,
            }))
        })
        .collect();
    json!({
        "ruleChainId": chain_ref,
        "version": version(chain),
        "firstNodeIndex": index.get(chain.doc.entry.as_str()).copied().unwrap_or(0),
        "nodes": nodes,
        "connections": connections,
        "ruleChainConnections": [],
        "notes": [],
    })
}

fn node_json(
    chain: &Chain,
    node: &NodeDoc,
    chain_ref: &Value,
    scripts: &BTreeMap<String, String>,
    debug: &DebugRegistry,
) -> Value {
    let uuid = node_id(&chain.file, &node.id);
    let mut config = match serde_json::to_value(&node.config) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    };
    if let Some(Value::String(file)) = config.remove(SCRIPT_KEY) {
        config.insert("scriptLang".to_owned(), json!("RHAI"));
        config.insert(
            "rhaiScript".to_owned(),
            json!(scripts.get(&file).cloned().unwrap_or_default()),
        );
        config.insert("scriptFile".to_owned(), json!(file));
    }
    let kind = Kind::parse(&node.kind).map_or_else(|| node.kind.clone(), Kind::tb_class);
    let (failures, until) = debug.get(uuid).map(|s| s.settings()).unwrap_or((false, 0));
    json!({
        "id": entity("RULE_NODE", uuid),
        "createdTime": 0,
        "ruleChainId": chain_ref,
        "type": kind,
        "name": node.name.clone().unwrap_or_else(|| node.id.clone()),
        "debugSettings": {
            "failuresEnabled": failures,
            "allEnabled": until > crate::domain::now_ms(),
            "allEnabledUntil": until,
        },
        "singletonMode": false,
        "queueName": null,
        "configurationVersion": 0,
        "configuration": config,
        "additionalInfo": {"ferroboardId": node.id},
        "externalId": null,
    })
}

/// A save turned into files: the chain's TOML and script texts (by path relative to the rules
/// directory), and the debug settings asked for (node id, failures, all until).
pub struct Candidate {
    pub overlay: BTreeMap<PathBuf, String>,
    pub debug: Vec<(Uuid, bool, i64)>,
}

/// `RuleChainMetaData` of `chain` -> the files it would be written as; every problem at once.
pub fn candidate(chain: &Chain, body: &Value) -> Result<Candidate, Vec<String>> {
    let mut errors = Vec::new();
    let nodes = body
        .get("nodes")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if nodes.is_empty() {
        errors.push("nodes: a chain needs at least one node".to_owned());
    }
    if body
        .get("ruleChainConnections")
        .and_then(Value::as_array)
        .is_some_and(|c| !c.is_empty())
    {
        errors.push(
            "ruleChainConnections: links to other chains are not supported; use connections"
                .to_owned(),
        );
    }
    let stem = chain.file.trim_end_matches(super::loader::CHAIN_SUFFIX);
    let existing: HashMap<Uuid, &NodeDoc> = chain
        .doc
        .nodes
        .iter()
        .map(|n| (node_id(&chain.file, &n.id), n))
        .collect();
    let mut overlay = BTreeMap::new();
    let mut debug = Vec::new();
    let mut ids: Vec<String> = Vec::new();
    let mut docs = Vec::new();
    let mut taken = HashSet::new();
    for (i, node) in nodes.iter().enumerate() {
        let at = format!("nodes[{i}]");
        let previous = node
            .pointer("/id/id")
            .and_then(Value::as_str)
            .and_then(|id| Uuid::parse_str(id).ok())
            .and_then(|id| existing.get(&id).copied());
        let id = local_id(node, previous, &mut taken);
        match node_doc(&at, stem, &id, node, previous) {
            Ok((doc, script)) => {
                if let Some((path, text)) = script {
                    overlay.insert(PathBuf::from(path), text);
                }
                docs.push(doc);
            }
            Err(e) => errors.push(e),
        }
        if let Some(settings) = debug_settings(node) {
            debug.push((node_id(&chain.file, &id), settings.0, settings.1));
        }
        ids.push(id);
    }
    let relations = connections(body, &ids, &mut errors);
    let entry = body
        .get("firstNodeIndex")
        .and_then(Value::as_u64)
        .and_then(|i| ids.get(usize::try_from(i).ok()?));
    if entry.is_none() && !ids.is_empty() {
        errors.push("firstNodeIndex: must be the index of one of the nodes".to_owned());
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let doc = ChainDoc {
        name: chain.doc.name.clone(),
        root: chain.doc.root,
        description: chain.doc.description.clone(),
        entry: entry.cloned().unwrap_or_default(),
        nodes: docs,
        relations,
    };
    let text = toml::to_string(&doc).map_err(|e| vec![format!("cannot write the chain: {e}")])?;
    overlay.insert(PathBuf::from(&chain.file), text);
    Ok(Candidate { overlay, debug })
}

/// The node's id in the file: kept from `additionalInfo.ferroboardId` or the node it updates,
/// else made from its name; unique within the chain.
fn local_id(node: &Value, previous: Option<&NodeDoc>, taken: &mut HashSet<String>) -> String {
    let given = node
        .pointer("/additionalInfo/ferroboardId")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| previous.map(|p| p.id.clone()));
    let base = given.unwrap_or_else(|| {
        let name = node.get("name").and_then(Value::as_str).unwrap_or("node");
        let slug: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect();
        let slug = slug.trim_matches('_').to_owned();
        if slug.is_empty() {
            "node".to_owned()
        } else {
            slug
        }
    });
    let mut id = base.clone();
    let mut n = 2;
    while !taken.insert(id.clone()) {
        id = format!("{base}_{n}");
        n += 1;
    }
    id
}

type Script = Option<(String, String)>;

/// One node of the JSON form -> its TOML entry and, for a script node, the script file to write.
fn node_doc(
    at: &str,
    stem: &str,
    id: &str,
    node: &Value,
    previous: Option<&NodeDoc>,
) -> Result<(NodeDoc, Script), String> {
    let type_name = node.get("type").and_then(Value::as_str).unwrap_or("");
    // An unknown type is written as given: validating the candidate reports it with the rest.
    let kind =
        Kind::parse(type_name).map_or_else(|| type_name.to_owned(), |k| k.as_str().to_owned());
    let config = match node.get("configuration") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(map)) => map.clone(),
        Some(_) => return Err(format!("{at}: configuration must be an object")),
    };
    let mut table = toml::Table::new();
    for (key, value) in &config {
        if JSON_ONLY.contains(&key.as_str()) || value.is_null() {
            continue;
        }
        let value = json_to_toml(value).map_err(|e| format!("{at}: configuration.{key}: {e}"))?;
        table.insert(key.clone(), value);
    }
    let mut script = None;
    if let Some(text) = config.get("rhaiScript").and_then(Value::as_str) {
        let file = config
            .get("scriptFile")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| {
                previous
                    .and_then(|p| p.config.get(SCRIPT_KEY))
                    .and_then(toml::Value::as_str)
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| format!("scripts/{stem}/{id}.rhai"));
        table.insert(SCRIPT_KEY.to_owned(), toml::Value::String(file.clone()));
        script = Some((file, text.to_owned()));
    } else if ["jsScript", "tbelScript"].iter().any(|k| {
        config
            .get(*k)
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty())
    }) {
        return Err(format!(
            "{at}: only Rhai scripts run here: give the script as configuration.rhaiScript"
        ));
    }
    let name = node.get("name").and_then(Value::as_str).map(str::to_owned);
    Ok((
        NodeDoc {
            id: id.to_owned(),
            kind,
            name: name.filter(|n| n != id),
            config: table,
        },
        script,
    ))
}

/// JSON to TOML by hand: numbers keep their kind (integers stay integers); nulls are dropped.
fn json_to_toml(value: &Value) -> Result<toml::Value, String> {
    Ok(match value {
        Value::Bool(b) => toml::Value::Boolean(*b),
        Value::String(s) => toml::Value::String(s.clone()),
        Value::Number(n) => match n.as_i64() {
            Some(i) => toml::Value::Integer(i),
            None => toml::Value::Float(
                n.as_f64()
                    .ok_or_else(|| format!("{n} is not a number TOML can hold"))?,
            ),
        },
        Value::Array(items) => toml::Value::Array(
            items
                .iter()
                .filter(|v| !v.is_null())
                .map(json_to_toml)
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => toml::Value::Table(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| Ok((k.clone(), json_to_toml(v)?)))
                .collect::<Result<_, String>>()?,
        ),
        Value::Null => return Err("null has no TOML form".to_owned()),
    })
}

/// `debugSettings` (or the legacy `debugMode`): (failures, all until epoch ms).
fn debug_settings(node: &Value) -> Option<(bool, i64)> {
    if let Some(settings) = node.get("debugSettings").filter(|s| s.is_object()) {
        let failures = settings["failuresEnabled"].as_bool().unwrap_or(false);
        let until = match settings["allEnabled"].as_bool() {
            Some(true) => i64::MAX,
            _ => settings["allEnabledUntil"].as_i64().unwrap_or(0),
        };
        return Some((failures, until));
    }
    let on = node.get("debugMode").and_then(Value::as_bool)?;
    Some((false, if on { i64::MAX } else { 0 }))
}

fn connections(body: &Value, ids: &[String], errors: &mut Vec<String>) -> Vec<RelationDoc> {
    let list = body
        .get("connections")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut out = Vec::new();
    for (i, c) in list.iter().enumerate() {
        let end = |key: &str| {
            c.get(key)
                .and_then(Value::as_u64)
                .and_then(|n| ids.get(usize::try_from(n).ok()?))
        };
        let relation = c.get("type").and_then(Value::as_str).unwrap_or("");
        match (end("fromIndex"), end("toIndex")) {
            (Some(from), Some(to)) => out.push(RelationDoc {
                from: from.clone(),
                to: to.clone(),
                relation: relation.to_owned(),
            }),
            _ => errors.push(format!(
                "connections[{i}]: fromIndex and toIndex must be indexes of nodes"
            )),
        }
    }
    out
}
